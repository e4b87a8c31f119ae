"""A store that explains itself: foreign keys, views, ISO times, ordered migrations that
older stores follow, and no query of the engine, the app or the CLI scanning a big table."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from engine.daystats import day_stats, last_keeps
from engine.export import FORMATS, status_json
from engine.host import Host
from engine.playbook import run_digest
from engine.schema import FOREIGN_KEYS
from engine.spec import load_spec
from engine.store import Store, migrations
from tests.conftest import metric_spec

#: Tables that grow with every experiment (or line of output); a full scan of one is a bug.
#: `runs`, `workers` and the migrations table hold a few rows each, and `path` is a view's
#: own recursive walk.
SMALL = {"runs", "rn", "workers", "_sqlite_migrations", "path", "p", "sqlite_master"}


def _run(db: Path, ws: Path, trace: list[str]) -> None:
    spec = metric_spec(ws, stop="max_rounds: 6")

    async def go() -> None:
        store = Store(db)
        store.conn.set_trace_callback(trace.append)
        host = Host(store)
        host.add(load_spec(spec))
        await host.run_until_done()
        store.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> dict:
    """A real run traced statement by statement, then every reader the app and the CLI use."""
    tmp = tmp_path_factory.mktemp("schema")
    ws = tmp / "ws"
    from tests.conftest import write

    write(ws / "params.yaml", "x: 1\ny: a\n")
    write(ws / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)
    subprocess.run("git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t "
                   "commit -qm start", shell=True, cwd=ws, check=True)
    db = tmp / "a.db"
    trace: list[str] = []
    _run(db, ws, trace)
    store = Store(db)
    store.conn.set_trace_callback(trace.append)
    run = store.get_run("toy")
    rid = run["id"]
    exp = store.experiments(rid)[-1]["id"]
    cid = store.add_command(rid, "pause")
    readers = [
        lambda: store.get_run(rid), lambda: store.get_run("toy"), store.runs,
        lambda: store.experiment(exp), lambda: store.experiments(rid, after_id=1, limit=5),
        lambda: store.experiments(rid, newest_first=True, limit=1),
        lambda: store.changed_since(exp - 2, 0.0), lambda: store.changelog(rid, 20),
        lambda: list(store.recent_verdicts(rid, 5)), lambda: store.in_flight(rid),
        lambda: store.last_round(rid), lambda: list(store.iter_experiments(rid)),
        lambda: store.item_results(exp), lambda: store.item_summary(exp),
        lambda: store.version_files(exp), lambda: store.advancing_chain(rid),
        lambda: store.events(rid), lambda: store.events(), lambda: store.events(experiment_id=exp),
        lambda: store.pending_commands([rid]), lambda: store.command(cid),
        lambda: store.commands(rid), lambda: store.commands(), lambda: store.run_stats(rid),
        lambda: store.candidates_since(rid, 1), lambda: store.last_reeval(rid, 1),
        lambda: store.pending_retests(rid), lambda: store.workers(rid),
        lambda: store.changelog_page(rid), lambda: store.changelog_page(rid, before_id=exp),
        lambda: store.changelog_page(rid, text="x"), lambda: store.score_points(rid),
        lambda: store.recent_scores(rid), lambda: store.light_changes(exp, 0.0),
        lambda: store.running_experiments(), lambda: store.verdicts_from(rid, 1),
        lambda: day_stats(store, 0.0), lambda: last_keeps(store),
        store.max_experiment_id, lambda: store.has_experiment(exp, rid),
        lambda: status_json(store), lambda: run_digest(store, run),
        lambda: store.mark_applied(cid, "ok"), lambda: store.set_verdict(exp, "reverted", "r"),
        lambda: store.set_commit(exp, "abc"), lambda: store.set_tier(exp, None),
        lambda: store.set_decision(exp, {"a": 1}),
        lambda: store._rows("SELECT * FROM changelog WHERE run = ? ORDER BY experiment", ["toy"]),
        lambda: store._rows("SELECT * FROM changelog WHERE run_id = ?", [rid]),
        lambda: store._rows("SELECT * FROM best_path WHERE run = ?", ["toy"]),
        lambda: store._rows("SELECT * FROM event_log WHERE experiment = ?", [exp]),
    ] + [lambda f=f: list(f(store, run)) for f in FORMATS.values()]
    for read in readers:
        read()
    store.conn.set_trace_callback(None)
    return {"db": db, "trace": trace, "store": store, "run": run}


def _plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


def test_no_query_of_the_engine_app_or_cli_scans_a_big_table(traced):
    conn: sqlite3.Connection = traced["store"].conn
    statements = {s.strip() for s in traced["trace"]
                  if re.match(r"\s*(SELECT|UPDATE|DELETE|INSERT|WITH)\b", s, re.I)}
    assert len(statements) > 40  # the run and the readers were traced
    scans = []
    for sql in statements:
        for step in _plan(conn, sql):
            m = re.match(r"SCAN (\w+)", step)
            # A walk in id order with a LIMIT and no WHERE reads only LIMIT rows.
            bounded = " WHERE " not in sql and re.search(r"ORDER BY id( DESC)? LIMIT", sql)
            if m and m.group(1) not in SMALL and "COVERING INDEX" not in step and not bounded:
                scans.append(f"{step}  ←  {sql[:160]}")
    assert not scans, "full scans:\n" + "\n".join(sorted(set(scans)))


def test_an_experiments_log_is_found_through_an_index(traced):
    plan = _plan(traced["store"].conn, "SELECT * FROM (SELECT * FROM events WHERE "
                 "experiment_id = 5 AND id > 0 ORDER BY id DESC LIMIT 200) ORDER BY id")
    assert any("USING INDEX events_experiment" in step for step in plan), plan


def test_every_reference_is_a_foreign_key(traced):
    db = traced["store"].db
    declared = {(fk.table, fk.column, fk.other_table, fk.other_column)
                for t in db.tables for fk in t.foreign_keys}
    assert set(FOREIGN_KEYS) <= declared
    assert ("experiments", "run_id", "runs", "id") in declared
    assert traced["store"].conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_changelog_view_reads_like_the_changelog(traced):
    store, run = traced["store"], traced["run"]
    rows = store._rows("SELECT * FROM changelog WHERE run = 'toy' ORDER BY experiment")
    ours = store.experiments(run["id"])
    assert [r["experiment"] for r in rows] == [e["id"] for e in ours]
    for view, e in zip(rows, ours, strict=True):
        assert view["round"] == e["round"] and view["verdict"] == e["verdict"]
        # The metric is minimized: a better score is a positive gain, as decision_json says.
        assert view["gain"] == (None if e["delta"] is None else -e["delta"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", view["started_at"])
        assert view["commit"] == e["git_commit"] and view["cost_usd"] == e["cost_usd"]
    kept = [r for r in rows if r["verdict"] == "kept"]
    assert all(r["gain"] > 0 for r in kept)
    decided = [json.loads(e["decision_json"]) for e in ours if e["verdict"] == "kept"]
    assert all(d["gain"] > 0 for d in decided)


def test_best_path_leads_from_the_baseline_to_the_best(traced):
    store, run = traced["store"], traced["run"]
    path = store._rows("SELECT * FROM best_path WHERE run = 'toy' ORDER BY steps_from_best DESC")
    assert path[0]["kind"] == "baseline" and path[-1]["experiment"] == run["best_experiment"]
    assert [p["steps_from_best"] for p in path] == list(range(len(path) - 1, -1, -1))
    for before, after in zip(path, path[1:], strict=False):
        assert after["parent"] == before["experiment"]


def test_migrations_are_named_in_the_order_they_run():
    names = [step.__name__ for step, _ in migrations.steps]
    numbers = [int(re.match(r"m(\d{3})_", n).group(1)) for n in names]
    assert numbers == list(range(1, len(names) + 1)), names


def test_a_new_store_written_from_the_first_one_is_the_same_store(tmp_path, monkeypatch):
    """The first new store of a process is migrated step by step; the next ones are written
    from its content in one transaction: the same schema, records, log mode and keys."""
    from engine import migrations as steps

    monkeypatch.setattr(steps, "_fresh", None)
    applied = []
    real_apply = steps.migrations.apply
    monkeypatch.setattr(steps.migrations, "apply", lambda db: applied.append(1) or real_apply(db))

    def content(store: Store) -> tuple:
        conn = store.conn
        return (conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                             "ORDER BY type, name").fetchall(),
                conn.execute("SELECT migration_set, name FROM _sqlite_migrations "
                             "ORDER BY rowid").fetchall(),
                conn.execute("PRAGMA journal_mode").fetchone(),
                conn.execute("PRAGMA foreign_key_list(experiments)").fetchall())

    first, second = Store(tmp_path / "first.db"), Store(tmp_path / "second.db")
    assert applied == [1] and steps._fresh  # migrated once, written once
    assert content(second) == content(first)
    assert content(second)[2] == ("wal",) and len(content(second)[1]) == len(steps.migrations.steps)
    run = second.create_run("r", spec_path="", spec_json="{}", workspace="", direction="maximize",
                            target=None)
    second.start_experiment(run, round=0, kind="baseline", parent=None)
    Store(tmp_path / "second.db").close()  # opened again: nothing pending
    # A file another process began first is not overwritten: it is migrated as usual.
    other = sqlite3.connect(tmp_path / "third.db")
    other.execute("CREATE TABLE mine (x)")
    other.commit()
    third = Store(tmp_path / "third.db")
    assert applied == [1, 1] and third.conn.execute("SELECT count(*) FROM mine").fetchone() == (0,)
    assert content(third)[1] == content(first)[1]


@pytest.mark.parametrize("with_queue", [False, True])
def test_a_store_migrated_under_the_old_names_opens_and_upgrades(tmp_path, with_queue):
    """A store made before the renames: its records say m040_decision, m030_workers,
    m010_tui_indexes (applied in that order; perhaps m050_worker_queue too), it has no foreign keys or views, an event of
    an experiment that is not there, and a command aimed at one."""
    db = tmp_path / "old.db"
    fresh = Store(tmp_path / "fresh.db")
    schema = [sql for (sql,) in fresh.conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")]
    fresh.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=wal")
    with conn:
        old = Path(__file__).parent / "data" / "store_v1_schema.sql"
        conn.executescript(old.read_text())
        conn.execute("INSERT INTO runs (id, name, created, direction) VALUES (1, 'r', 0, 'maximize')")
        conn.execute("INSERT INTO experiments (id, run_id, round, kind, verdict, started, score) "
                     "VALUES (1, 1, 0, 'baseline', 'baseline', 0, 0.5)")
        conn.execute("UPDATE runs SET best_experiment = 1")
        conn.execute("INSERT INTO events (run_id, experiment_id, ts, line) VALUES (1, 1, 0, 'x')")
        conn.execute("INSERT INTO events (run_id, experiment_id, ts, line) VALUES (1, 42, 0, 'y')")
        conn.execute("INSERT INTO commands (run_id, verb, target, created) VALUES (1, 'veto', 99, 0)")
        if with_queue:  # and then the SLURM worker's step, once called m050_worker_queue
            conn.execute("ALTER TABLE workers ADD COLUMN queue TEXT")
            conn.execute("ALTER TABLE workers ADD COLUMN job_id TEXT")
            conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                         "VALUES ('autoresearch', 'm050_worker_queue', '2026-11-02')")
    conn.close()
    store = Store(db)
    names = [n for (n,) in store.conn.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert names == [step.__name__ for step, _ in migrations.steps]
    assert store.conn.execute("SELECT decision_json FROM experiments").fetchone() == (None,)
    assert store.experiment(1)["score"] == 0.5
    assert [(e["experiment_id"], e["line"]) for e in store.events(1)] == [(1, "x"), (None, "y")]
    assert store.commands(1)[0]["target"] == 99  # left for the engine to answer
    upgraded = [sql for (sql,) in store.conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")]
    assert len(upgraded) == len(schema)
    assert store._rows("SELECT run, verdict FROM changelog") == [{"run": "r", "verdict": "baseline"}]
    store.close()
    Store(db).close()  # and again: nothing left to do, nothing fails


def test_sqlite_utils_and_datasette_one_liners_from_the_readme(traced):
    db = str(traced["db"])
    out = subprocess.run(["sqlite-utils", "rows", db, "changelog", "--limit", "3", "--nl"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["run"] == "toy"
    out = subprocess.run(["sqlite-utils", db, "select run, verdict, count(*) as n from changelog "
                          "group by run, verdict", "--table"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "baseline" in out.stdout, out.stderr
    out = subprocess.run(["sqlite-utils", "memory", "--help"], capture_output=True, timeout=60)
    assert out.returncode == 0


def test_datasette_links_experiments_to_their_run(traced):
    if shutil.which("datasette") is None:
        pytest.skip("datasette is not installed (pip install -e '.[dev]')")
    db = traced["db"]
    got = subprocess.run(["datasette", str(db), "--get",
                          f"/{db.stem}/experiments.json?_shape=array&_labels=on&_size=2"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)
    assert rows[0]["run_id"] == {"value": 1, "label": "toy"}  # through the foreign key
    assert rows[1]["parent"]["value"] == rows[0]["id"]
    got = subprocess.run(["datasette", str(db), "--get", f"/{db.stem}/best_path.json?_shape=array"],
                         capture_output=True, text=True, timeout=60)
    assert json.loads(got.stdout)[0]["run"] == "toy"
