"""Bounded growth (engine/retention.py): reverted versions stored as deltas against their
parent, rebuilt exactly for every reader, and `retention:` pruning old reverted results —
on a real host, subprocesses and SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import retention
from engine.host import Host
from engine.spec import SpecError, load_spec
from engine.store import Store
from tests.conftest import metric_spec, write
from tests.test_loop import run_spec

BODY = "".join(f"line {i}: a sentence of the skill that no mutation touches\n"
               for i in range(60))
SCORE = "awk '/^x:/{print \"METRIC loss=\" ($2-7)*($2-7)}' params.yaml\n"


@given(st.lists(st.sampled_from(["a\n", "b\n", "c", "\n", "dé\n", "x: 1\n"]), max_size=30),
       st.lists(st.sampled_from(["a\n", "b\n", "c", "\n", "dé\n", "x: 2\n"]), max_size=30))
@settings(max_examples=80, deadline=None)
def test_a_delta_rebuilds_the_text_exactly(old: list[str], new: list[str]):
    parent, text = "".join(old), "".join(new)
    delta = retention.encode(parent, text)
    assert delta is None or (len(delta) < len(text) and retention.decode(parent, delta) == text)


async def test_reverted_versions_are_deltas_and_read_back_whole(tmp_path: Path):
    ws = tmp_path / "ws"
    write(ws / "params.yaml", "x: 1\n" + BODY)
    write(ws / "score.sh", SCORE)
    spec = metric_spec(ws, command="sh score.sh", stop="max_rounds: 25")
    spec.write_text(spec.read_text().replace("    y: {type: choice, values: [a, b, c]}\n", "")
                    .replace("max: 20}", "max: 500}"))
    store = await run_spec(tmp_path / "a.db", spec)
    rows = store.experiments(store.get_run("toy")["id"])
    reverted = [r for r in rows if r["verdict"] == "reverted"]
    assert reverted
    stored = dict(store.conn.execute(
        "SELECT experiment_id, length(content) FROM versions WHERE base IS NOT NULL"))
    assert {r["id"] for r in reverted} <= set(stored)  # every reverted one...
    assert not {r["id"] for r in rows if r["verdict"] in ("kept", "baseline")} & set(stored)
    assert max(stored.values()) < 200 < len(BODY)  # a few lines' worth, not a copy
    for r in reverted:
        text = store.version_files(r["id"])["params.yaml"]
        parent = store.version_files(r["parent"])["params.yaml"]
        assert text.endswith(BODY) and text != parent
        added = [line[1:] for line in r["diff"].splitlines()
                 if line.startswith("+") and not line.startswith("+++")]
        assert added and all(line in text.splitlines() for line in added)
    # What a resumed params mutator reads: whole texts too.
    tried = store.candidate_files(store.get_run("toy")["id"], "params.yaml", 100)
    assert all(t["content"].endswith(BODY) for t in tried)
    # A resume (more rounds) climbs on from there, nothing lost.
    spec.write_text(spec.read_text().replace("max_rounds: 25", "max_rounds: 30"))
    store = await run_spec(tmp_path / "a.db", spec)
    assert [r["round"] for r in store.experiments(store.get_run("toy")["id"])] == list(range(31))


async def test_retention_prunes_old_reverted_results_and_keeps_the_changelog(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(retention, "FLOOR", 3)
    ws = tmp_path / "ws"
    write(ws / "params.yaml", "x: 1\n" + BODY)
    write(ws / "score.sh", SCORE)
    spec = metric_spec(ws, command="sh score.sh", stop="max_rounds: 30",
                       extra="retention: {max_reverted: 4}\n")
    spec.write_text(spec.read_text().replace("    y: {type: choice, values: [a, b, c]}\n", "")
                    .replace("max: 20}", "max: 500}"))
    store = Store(tmp_path / "a.db")
    host = Host(store)
    host.add(load_spec(spec))
    await host.run_until_done()
    run_id = store.get_run("toy")["id"]
    before = store.experiments(run_id)
    host.prune()
    after = store.experiments(run_id)
    assert [r["id"] for r in after] == [r["id"] for r in before]  # the changelog is whole
    with_files = {r[0] for r in store.conn.execute("SELECT experiment_id FROM versions")}
    reverted = [r["id"] for r in after if r["verdict"] == "reverted"]
    assert len(reverted) > 4
    assert [i for i in reverted if i in with_files] == reverted[-4:]  # the newest stay
    assert all(r["id"] in with_files for r in after if r["verdict"] in ("kept", "baseline"))
    # Resume still works on a pruned store.
    spec.write_text(spec.read_text().replace("max_rounds: 30", "max_rounds: 33"))
    store = Store(tmp_path / "a.db")
    host = Host(store)
    host.add(load_spec(spec))
    await host.run_until_done()
    assert [r["round"] for r in store.experiments(run_id)] == list(range(34))


@pytest.mark.parametrize("value, message", [
    ("{keep_days: 0}", "retention.keep_days: Input should be greater than 0"),
    ("{max_reverted: -3}", "retention.max_reverted: Input should be greater than or equal"),
    ("{keep: 3}", "retention.keep"),
])
def test_bad_retention_values_name_the_line(tmp_path: Path, params_workspace: Path,
                                            value: str, message: str):
    spec = metric_spec(params_workspace, extra=f"retention: {value}\n")
    line = spec.read_text().splitlines().index(f"retention: {value}") + 1
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert f"{spec}:{line}: {message}" in str(err.value)



def test_a_one_place_change_is_a_small_delta() -> None:
    parent = "".join(f"line {i}\n" for i in range(200))
    text = parent.replace("line 120\n", "line 120 changed\n")
    delta = retention.encode(parent, text)
    assert delta == '[[0,120],"line 120 changed\\n",[121,200]]'
    assert retention.decode(parent, delta) == text


@given(st.integers(2, 80), st.sets(st.integers(0, 79), min_size=2, max_size=10))
@settings(max_examples=80, deadline=None)
def test_lines_changed_in_place_are_a_delta_of_ranges_and_the_new_lines(size, where):
    """Several parameters changed (each its own line, the file's length unchanged): the
    delta is read off line by line, keeps every unchanged line as a range, and rebuilds."""
    old = [f"p{i}: {i}\n" for i in range(size)]
    new = [f"p{i}: {i + 1000}\n" if i in where else line for i, line in enumerate(old)]
    parent, text = "".join(old), "".join(new)
    delta = retention.encode(parent, text)
    if delta is None:  # not smaller than the text (a short file, most lines changed)
        return
    assert retention.decode(parent, delta) == text
    ops = json.loads(delta)
    assert sum(j - i for i, j in (op for op in ops if isinstance(op, list))) == size - len(
        [i for i in where if i < size])  # every unchanged line is one of the parent's
