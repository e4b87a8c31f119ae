"""Parallel waves and two-tier screening, on local worker slots in groups (the same code
runs SSH slots): what is proposed, where it runs, what is compared with what, what is kept."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from engine import spec as specs
from engine.loop import RunLoop
from engine.spec import SpecError, parse_spec
from engine.workers.tiers import screened
from tests.conftest import write
from tests.sshd import make_spec, run_loop, until

PY = sys.executable


def tiered_workspace(ws: Path) -> Path:
    """The screen tier's scores live on another scale (+100), as a cheaper budget's would."""
    write(ws / "score.py", """
        import os, yaml
        p = yaml.safe_load(open("params.yaml"))
        loss = abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)
        if os.environ.get("AUTORESEARCH_TIER") == "screen":
            assert os.environ["SCREEN_FLAG"] == "on"
            loss += 100
        print(f"METRIC loss={loss}")
    """)
    return ws


async def test_screen_tier_promotes_top_k_and_compares_only_within_a_tier_and_group(
        params_workspace: Path, tmp_path: Path) -> None:
    ws = tiered_workspace(params_workspace)
    spec = make_spec(ws, "tiers", command=f"{PY} score.py", parallel=3,
                     workers=[{"kind": "local", "slots": 2, "group": "cheap"},
                              {"kind": "local", "slots": 1, "group": "big"}],
                     screen={"group": "cheap", "env": {"SCREEN_FLAG": "on"}},
                     promote={"top_k": 1}, stop={"max_rounds": 12})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    cheap, big = {"local:1", "local:2"}, {"local:3"}
    by_wave: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_wave[row["wave"]].append(row)

    baseline, references = rows[0], [r for r in rows if r["kind"] == "reference"]
    assert baseline["kind"] == "baseline" and baseline["worker"] in big
    assert references and all(r["tier"] == "screen" and r["verdict"] == "retest"
                              and r["score"] >= 100 and r["worker"] in cheap for r in references)
    candidates = [r for r in rows if r["kind"] == "candidate"]
    assert len(candidates) == 12 and {r["tier"] for r in candidates} == {"screen", "full"}
    for row in candidates:
        if row["tier"] == "screen":
            assert row["worker"] in cheap and row["score"] >= 100
            assert row["reason"].startswith("screened out") and row["verdict"] == "reverted"
            assert abs(row["delta"]) < 50  # measured against the screened best, not the full one
        else:
            assert row["worker"] in big and row["score"] < 100
            assert row["metrics_json"] and '"screen_score": 1' in row["metrics_json"]
    for wave, wave_rows in by_wave.items():
        if wave is not None:
            assert len([r for r in wave_rows if r["tier"] == "full"]) <= 1  # top_k
    kept = [r for r in rows if r["verdict"] == "kept"]
    assert kept and all(r["tier"] == "full" for r in kept)
    # Every kept version is screened again for reference before the next wave compares with it.
    assert {r["parent"] for r in references} >= {baseline["id"], *(r["id"] for r in kept[:-1])}
    run = loop.store.get_run(loop.run_id)
    assert run["best_score"] == min(r["score"] for r in rows if r["tier"] != "screen")


async def test_parallel_candidates_are_each_decided_against_the_best_as_they_land(
        params_workspace: Path, tmp_path: Path) -> None:
    spec = make_spec(params_workspace, "wave", command=f"{PY} score.py", parallel=4,
                     workers=[{"kind": "local", "slots": 4}], stop={"max_rounds": 12})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = [r for r in loop.store.experiments(loop.run_id) if r["kind"] == "candidate"]
    assert len(rows) == 12 and all(r["score"] is not None for r in rows)
    # Each delta is against the best when the candidate landed: a keep beat it, a revert
    # did not, and the keeps make one chain of ever better bests from the baseline's 9.
    against = {r["id"]: r["score"] - r["delta"] for r in rows}
    kept = sorted((r for r in rows if r["verdict"] == "kept"), key=lambda r: -r["score"])
    assert kept and all(r["delta"] < 0 for r in kept)
    by_id = {r["id"]: r for r in rows}
    for row in rows:  # a revert did not beat the best when it landed, unless it landed in
        if row["verdict"] == "reverted" and row["delta"] < 0:  # the same moment as a keep
            winner = re.fullmatch(r"#(\d+) did better in this wave", row["reason"])
            assert winner, row  # that beat it by more (settle.py: one keep per landing)
            assert by_id[int(winner.group(1))]["delta"] <= row["delta"]
    assert [against[r["id"]] for r in kept] == [9, *(r["score"] for r in kept[:-1])]
    for row in rows:  # one whose parent was replaced while it ran says so
        decided = loop.store.experiment(against_id := row["parent"])
        if decided["score"] != against[row["id"]]:
            assert json.loads(row["decision_json"])["proposed_from"] == against_id
    run = loop.store.get_run(loop.run_id)
    assert run["best_score"] == kept[-1]["score"] and run["rounds"] == 12
    assert {r["worker"] for r in rows} <= {"local:1", "local:2", "local:3", "local:4"}


async def test_a_wave_is_proposed_ahead_of_free_workers(params_workspace: Path,
                                                         tmp_path: Path) -> None:
    spec = make_spec(params_workspace, "ahead", command=f"sleep 0.4; {PY} score.py", parallel=4,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 4})
    seen: list[tuple[int, int]] = []

    async def during(loop: RunLoop) -> None:
        def ahead() -> bool:
            seen.append((len(loop.in_flight), len(loop.pool.busy)))
            return seen[-1] == (4, 2)

        await until(ahead, what="four proposals waiting on two busy slots")

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    assert len(loop.store.experiments(loop.run_id)) == 5


# ---------------------------------------------------------------- spec shape


BASE = """
name: t
target: {files: [a.txt]}
mutator: {kind: params, file: a.txt, params: {x: {type: int, min: 0, max: 9}}}
evaluate: {kind: metric, command: "true", metric: m}
"""


@pytest.mark.parametrize("extra, message", [
    ("workers: [{kind: local, group: a}, {kind: local, group: b}]",
     "t.yaml:6: workers: workers are in several groups (a, b) but scores compare only within "
     "one group"),
    ("promote: {top_k: 2}", "t.yaml:6: promote: needs a `screen` tier"),
    ("screen: {group: gpu}", "t.yaml:6: screen.group: no worker in group 'gpu' (groups: "
     "default)"),
    ("workers: [{kind: local, group: a}, {kind: local, group: b}, {kind: local, group: c}]\n"
     "screen: {group: a}", "promote: add `group: NAME`, the worker group of the full tier"),
    ("workers: [{kind: local, group: a}, {kind: local, group: b}, {kind: local, group: c}]\n"
     "screen: {group: a}\npromote: {group: b}",
     "t.yaml:6: workers: workers in group 'c' belong to no tier"),
    ("screen: {samples: 0}", "screen.samples: Input should be greater than or equal to 1"),
    ("workers: [{kind: ssh, host: box, heartbeat_s: 0}]",
     "workers[0].heartbeat_s: Input should be greater than 0"),
])
def test_tier_and_group_mistakes_are_one_line_errors(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE + extra, "t.yaml")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_tiers_pick_their_groups() -> None:
    two = "workers: [{kind: local, group: cheap}, {kind: local, group: big}]\n"
    assert parse_spec(BASE + two + "screen: {group: cheap}").tier_groups() == ("cheap", "big")
    assert parse_spec(BASE + two + "screen: {}\npromote: {group: big}").tier_groups() == (
        "cheap", "big")
    assert parse_spec(BASE + "screen: {timeout_s: 5}").tier_groups() == ("default", "default")
    assert parse_spec(BASE).tier_groups() == (None, "default")


def test_screen_settings_make_each_evaluation_kind_cheaper() -> None:
    checklist = specs.ChecklistEval(
        kind="checklist", produce={"kind": "command", "command": "cat", "timeout_s": 60},
        inputs=["a", "b", "c"], samples=5, items=[{"name": "n", "contains": "x"}])
    cheap = screened(checklist, specs.Screen(samples=1, inputs=2, timeout_s=5))
    assert (cheap.samples, cheap.inputs, cheap.produce.timeout_s) == (1, ["a", "b"], 5)
    metric = specs.MetricEval(kind="metric", command="python train.py", metric="loss")
    cheap = screened(metric, specs.Screen(command="python train.py --steps 100", timeout_s=30))
    assert (cheap.command, cheap.timeout_s) == ("python train.py --steps 100", 30)
    assert screened(metric, specs.Screen()) == metric
