"""The hill-climbing loop on real workspaces: real files, git, subprocesses and SQLite."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from engine.host import Host
from engine.model import UserError
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import metric_spec, write


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws,
                          check=True, capture_output=True, text=True).stdout


def make_repo(ws: Path) -> None:
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")


async def run_spec(db: Path, spec_path: Path) -> Store:
    store = Store(db)
    host = Host(store)
    host.add(load_spec(spec_path))
    await host.run_until_done()
    return store


async def test_toy_run_improves_and_target_holds_best(tmp_path: Path, params_workspace: Path):
    make_repo(params_workspace)
    spec = metric_spec(params_workspace, stop="max_rounds: 40, target: 0, streak: 1")
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("toy")
    assert run["baseline_score"] == 9  # |1-7| + 3
    assert run["best_score"] < run["baseline_score"]
    best = store.experiment(run["best_experiment"])
    on_disk = (params_workspace / "params.yaml").read_text()
    assert store.version_files(best["id"])["params.yaml"] == on_disk
    assert "# the number to tune" in on_disk  # comments survive the rewrite
    # The branch holds exactly the baseline plus one commit per kept experiment, in order.
    kept = [e for e in store.experiments(run["id"]) if e["verdict"] == "kept"]
    log = git(params_workspace, "log", "--format=%s", "autoresearch/toy").splitlines()
    assert log[: len(kept)] == [e["description"] for e in reversed(kept)]
    assert git(params_workspace, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/toy"
    assert all(e["git_commit"] for e in kept)


async def test_every_experiment_is_recorded_with_diff_and_delta(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 8")
    store = await run_spec(tmp_path / "a.db", spec)
    rows = store.experiments(store.get_run("toy")["id"])
    assert [r["round"] for r in rows] == list(range(0, 9))
    for row in rows[1:]:
        assert row["verdict"] in {"kept", "reverted"}
        assert row["diff"].startswith("--- a/params.yaml")
        assert row["delta"] is not None and row["reason"]
    ties = [r for r in rows if r["delta"] == 0]
    assert all(r["verdict"] == "reverted" for r in ties)  # ties revert


async def test_max_rounds_and_resume_continues_counting(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 3")
    db = tmp_path / "a.db"
    store = await run_spec(db, spec)
    assert store.get_run("toy")["stop_reason"] == "max rounds (3) reached"
    spec.write_text(spec.read_text().replace("max_rounds: 3", "max_rounds: 5"))
    store = await run_spec(db, spec)
    rows = store.experiments(store.get_run("toy")["id"])
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4, 5]
    assert sum(r["kind"] == "baseline" for r in rows) == 1


async def test_hung_evaluation_times_out_and_its_children_die(tmp_path, params_workspace):
    pidfile = tmp_path / "child.pid"
    write(params_workspace / "hang.sh", f"sleep 300 & echo $! > {pidfile}\nwait\n")
    spec = metric_spec(params_workspace, command="sh hang.sh", timeout="1",
                       stop="max_rounds: 1")
    store = Store(tmp_path / "a.db")
    host = Host(store)
    host.add(load_spec(spec))
    await host.run_until_done()
    run = store.get_run("toy")
    assert run["status"] == "failed" and "timed out" in run["stop_reason"]
    assert store.experiments(run["id"])[0]["verdict"] == "timeout"
    child = int(pidfile.read_text())
    await asyncio.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


async def test_missing_metric_is_a_crash_never_zero(tmp_path, params_workspace):
    write(params_workspace / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        if p["x"] == 1:
            print("METRIC loss=9")
        else:
            print("forgot the metric")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 3, max_failures: 3")
    store = await run_spec(tmp_path / "a.db", spec)
    rows = store.experiments(store.get_run("toy")["id"])
    assert rows[0]["score"] == 9
    crashed = [r for r in rows if r["verdict"] == "crashed"]
    assert crashed and all(r["score"] is None for r in crashed)
    assert "no `loss` metric" in crashed[0]["reason"]


async def test_flood_of_output_is_stored_truncated(tmp_path, params_workspace):
    write(params_workspace / "score.py", """
        import sys
        line = "x" * 1000 + "\\n"
        for _ in range(20000):
            sys.stdout.write(line)
        sys.stdout.write("y" * 3_000_000)
        print()
        print("METRIC loss=3")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 1")
    db = tmp_path / "a.db"
    store = await run_spec(db, spec)
    base = store.experiments(store.get_run("toy")["id"])[0]
    assert base["score"] == 3
    assert len(base["log_tail"]) <= 9000
    assert db.stat().st_size < 8_000_000  # 23 MB of output, a bounded store


async def test_second_engine_on_same_run_is_refused(tmp_path, params_workspace):
    spec = load_spec(metric_spec(params_workspace))
    first = Host(Store(tmp_path / "a.db"))
    first.add(spec)
    second = Host(Store(tmp_path / "a.db"))
    with pytest.raises(UserError, match="already being run by another engine"):
        second.add(spec)


async def test_uncommitted_target_changes_are_refused(tmp_path, params_workspace):
    make_repo(params_workspace)
    (params_workspace / "params.yaml").write_text("x: 2\ny: a\n")
    store = await run_spec(tmp_path / "a.db", metric_spec(params_workspace))
    run = store.get_run("toy")
    assert run["status"] == "failed"
    assert "uncommitted changes to target files (params.yaml)" in run["stop_reason"]
    assert (params_workspace / "params.yaml").read_text() == "x: 2\ny: a\n"  # untouched


async def test_plateau_and_failure_streak_stop_rules(tmp_path, params_workspace):
    write(params_workspace / "score.py", 'print("METRIC loss=1")\n')  # nothing ever improves
    store = await run_spec(tmp_path / "a.db", metric_spec(params_workspace, stop="plateau: 4"))
    assert store.get_run("toy")["stop_reason"] == "plateau: 4 rounds without a keep"
    write(params_workspace / "score.py", """
        import yaml, sys
        sys.exit(0 if yaml.safe_load(open("params.yaml"))["x"] == 1 else 3)
    """)
    write(params_workspace / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print("METRIC loss=1" if p["x"] == 1 and p["y"] == "a" else "broken")
    """)
    spec = metric_spec(params_workspace, name="fails", stop="max_failures: 3")
    store = await run_spec(tmp_path / "b.db", spec)
    assert store.get_run("fails")["stop_reason"] == "3 failures in a row"


async def test_target_streak_stops_a_checklist_run(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "text.yaml", "greeting: hello\n")
    spec = write(tmp_path / "c.yaml", """
        name: words
        target: {workspace: ws, files: [text.yaml]}
        mutator:
          kind: params
          file: text.yaml
          params: {greeting: {type: choice, values: [hello, hi, hey]}}
        evaluate:
          kind: checklist
          produce: {kind: command, command: cat text.yaml}
          items:
            - {name: yaml, contains: "greeting:"}
            - {name: short, words: {max: 5}}
            - {name: no-shouting, not_contains: "HELLO"}
        stop: {max_rounds: 20}
    """)
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("words")
    assert run["stop_reason"].startswith("target 0.95 reached: the best version #1 scored")
    items = store.item_summary(run["best_experiment"])
    assert [(i["item"], i["passed"], i["total"]) for i in items] == [
        ("yaml", 1, 1), ("short", 1, 1), ("no-shouting", 1, 1)]


async def test_tests_evaluator_scores_junit_cases(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "conf.yaml", "limit: 1\n")
    write(ws / "test_limit.py", """
        import yaml
        LIMIT = yaml.safe_load(open("conf.yaml"))["limit"]
        def test_above_two(): assert LIMIT > 2
        def test_above_four(): assert LIMIT > 4
        def test_below_ten(): assert LIMIT < 10
    """)
    spec = write(tmp_path / "t.yaml", """
        name: suite
        target: {workspace: ws, files: [conf.yaml], protected: [test_limit.py]}
        mutator: {kind: params, file: conf.yaml, seed: 1, params: {limit: {type: int, min: 0, max: 12}}}
        evaluate:
          kind: tests
          command: python -m pytest -q -p no:cacheprovider --junitxml=report.xml test_limit.py
        stop: {max_rounds: 15, target: 1.0, streak: 1}
    """)
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("suite")
    base = store.experiments(run["id"])[0]
    assert base["score"] == pytest.approx(1 / 3)
    items = {r["item"]: r["passed"] for r in store.item_results(base["id"])}
    assert items == {"test_limit::test_above_two": 0, "test_limit::test_above_four": 0,
                     "test_limit::test_below_ten": 1}
    assert run["best_score"] == 1.0
    assert 4 < yaml.safe_load((ws / "conf.yaml").read_text())["limit"] < 10


async def test_proposing_ahead_changes_nothing_a_seeded_run_does(tmp_path, monkeypatch):
    """While a candidate is evaluated the loop proposes and stages the next one, as if this
    one will not be kept (engine/ahead.py); a keep undoes it. A seeded run makes the
    very same experiments, files and verdicts either way."""
    from engine.mutators.params import ParamsMutator

    def run(name: str) -> list[tuple]:
        ws = tmp_path / name
        write(ws / "params.yaml", "x: 50\ny: 1.5\n")
        # Keeps now and then (the score follows x), crashes for some x.
        write(ws / "score.sh", "x=$(sed -n 's/x: //p' params.yaml); "
                               "y=$(sed -n 's/y: //p' params.yaml); "
                               "case $x in *3|*7) exit 3;; esac; "
                               "echo METRIC loss=$(echo \"$x\" | tr -d -)\n")
        spec = tmp_path / f"{name}.yaml"
        write(spec, f"""
name: {name}
target: {{workspace: {name}, files: [params.yaml]}}
mutator:
  kind: params
  file: params.yaml
  seed: 7
  params:
    x: {{type: int, min: -100, max: 100}}
    y: {{type: float, min: 0.5, max: 9.9}}
evaluate: {{kind: metric, command: "sh score.sh", metric: loss, direction: minimize}}
stop: {{max_rounds: 60, max_failures: null}}
""")
        store = Store(tmp_path / f"{name}.db")
        host = Host(store)
        loop = host.add(load_spec(spec))
        asked = []
        ahead = loop.mutator.propose_ahead if hasattr(loop.mutator, "propose_ahead") else None
        if ahead is not None:
            def counted(*args):
                made = ahead(*args)
                asked.append(made is not None)
                return made
            loop.mutator.propose_ahead = counted
        return store, host, loop, asked

    store_a, host_a, loop_a, asked = run("ahead")
    await host_a.run_until_done()
    monkeypatch.delattr(ParamsMutator, "propose_ahead")
    store_b, host_b, loop_b, _ = run("plain")
    await host_b.run_until_done()

    def history(store: Store, loop) -> list[tuple]:
        return [(e["round"], e["description"], e["verdict"], e["score"],
                 store.version_files(e["id"]).get("params.yaml"))
                for e in store.experiments(loop.run_id)]

    a, b = history(store_a, loop_a), history(store_b, loop_b)
    assert len(a) == 61 and a == b
    verdicts = {row[2] for row in a}
    assert {"kept", "reverted", "crashed"} <= verdicts  # every path of undoing was taken
    assert sum(asked) > 20  # and proposals were made ahead most rounds


def test_one_slow_staging_does_not_send_a_small_workspace_to_a_thread():
    """The shortest of the last few stagings decides: a preempted engine's one slow
    staging keeps staging (and proposing ahead) inline; a workspace slow every time goes
    to a thread, and back once it is small again."""
    from engine.scoring import INLINE_STAGE_S, STAGE_SAMPLES, StagingTimes

    times = StagingTimes()
    assert times.inline  # nothing measured yet
    times.add(INLINE_STAGE_S / 4)
    times.add(INLINE_STAGE_S * 20)  # a preemption
    assert times.inline
    for _ in range(STAGE_SAMPLES):
        times.add(INLINE_STAGE_S * 5)
    assert not times.inline
    times.add(INLINE_STAGE_S / 4)
    assert times.inline


async def test_a_hand_edit_while_a_candidate_is_scored_is_never_written_over(tmp_path: Path):
    """A person edits the target file while a candidate that will be kept is being scored:
    the keep does not write over their text; it is the run's next baseline, and the run
    climbs from it (their comment stays in every later version)."""
    ws = tmp_path / "ws"
    write(ws / "p.yaml", "x: 0\n")
    hand = "x: 0.5\n# tuned by hand\n"
    write(tmp_path / "hand.yaml", hand)
    # The second evaluation (the first candidate's: any x > 0 beats 0) plays the person.
    write(ws / "score.sh", f"""
        n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n + 1)) > {tmp_path}/n
        [ "$n" = 1 ] && cp {tmp_path}/hand.yaml {ws}/p.yaml
        echo "METRIC score=$(sed -n 's/^x: //p' p.yaml)"
    """)
    make_repo(ws)
    spec = write(tmp_path / "s.yaml", """
        name: hand
        target: {workspace: ws, files: [p.yaml], protected: [score.sh]}
        mutator: {kind: params, file: p.yaml, seed: 3, params: {x: {type: float, min: 0, max: 1}}}
        evaluate: {kind: metric, command: sh score.sh, metric: score, direction: maximize}
        stop: {max_rounds: 8}
    """)
    store = await run_spec(tmp_path / "a.db", spec)
    run_id = store.get_run("hand")["id"]
    rows = store.experiments(run_id)
    assert rows[1]["verdict"] == "kept"  # it beat x: 0 ...
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert len(baselines) == 2 and baselines[1]["description"] == "baseline: edited by hand"
    assert store.version_files(baselines[1]["id"]) == {"p.yaml": hand}  # ... and the hand won
    assert baselines[1]["score"] == 0.5
    assert "# tuned by hand" in (ws / "p.yaml").read_text()
    assert any("edited by hand while" in e["line"] for e in store.events(run_id, limit=500))
