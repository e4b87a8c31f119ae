"""The slots are kept full (engine/waves.py): a slot that finishes gets its candidate decided
against the best as it is then, and a new candidate at once, while the other slots keep
running. Real local slots, subprocesses, git-less workspaces and SQLite; the mutator is a
script (a model's replies would do the same), the scores a deterministic function of them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from engine.host import Host
from engine.loop import RunLoop
from engine.model import Mutation, Proposal
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import write
from tests.sshd import make_spec, until

PY = sys.executable


class Script:
    """Proposes the given params.yaml contents in turn (then ones that change nothing)."""

    def __init__(self, contents: list[str], reads_history: bool = False,
                 latency: float = 0.0) -> None:
        self.contents = list(contents)
        self.reads_history = reads_history  # False: no proposals made ahead
        self.latency = latency
        self.made = 0

    async def propose(self, proposal: Proposal) -> Mutation:
        await asyncio.sleep(self.latency)  # (a model's)
        self.made += 1
        text = self.contents.pop(0) if self.contents else proposal.best_files["params.yaml"]
        return Mutation(text.replace("\n", " ").strip(), {"params.yaml": text})

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        pass


def slow_when_asked(ws: Path) -> None:
    """A version whose params say `slow: S` takes S seconds to score; the others a moment."""
    write(ws / "score.py", """
        import time, yaml
        p = yaml.safe_load(open("params.yaml"))
        time.sleep(p.get("slow", 0))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)


async def hosted(spec: Path, db: Path, script: Script, during=None) -> RunLoop:
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec))
    loop.mutator = script
    if script.reads_history:  # (the loop sets this up for such a mutator, as for a model)
        loop.stream.depth = loop.spec.parallel
    task = host.start(loop)
    if during is not None:
        await during(loop)
    await until(task.done, timeout=60, what="the run to finish")
    task.result()
    await host.close()
    return loop


def candidates(loop: RunLoop) -> list[dict]:
    return [r for r in loop.store.experiments(loop.run_id) if r["kind"] == "candidate"]


async def test_a_fast_slot_runs_several_candidates_while_a_slow_one_is_scored(
        params_workspace: Path, tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "lanes", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 6})
    script = Script(["x: 2\ny: a\nslow: 2\n"] + [f"x: {x}\ny: a\n" for x in (3, 4, 5, 6, 0)])
    loop = await hosted(spec, tmp_path / "a.db", script)

    rows = candidates(loop)
    slow = next(r for r in rows if "slow" in r["description"])
    during = [r for r in rows if r is not slow and r["finished"] < slow["finished"]]
    # (waves: one candidate beside it, then a wait for it)
    assert len(during) >= 3 and all(r["worker"] != slow["worker"] for r in during)
    assert all(r["verdict"] != "running" for r in rows)
    # No round beyond max_rounds, though a slot was free when the last one started.
    assert len(rows) == 6 and max(r["round"] for r in rows) == 6
    assert loop.store.get_run(loop.run_id)["rounds"] == 6


async def test_a_keep_while_another_is_scored_decides_that_one_against_the_new_best(
        params_workspace: Path, tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "sibling", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 3})
    # The slow one (loss 0) would win a wave; the fast one (loss 1) lands and is kept first.
    script = Script(["x: 7\ny: b\nslow: 1.5\n", "x: 6\ny: b\n", "x: 8\ny: a\n"])
    loop = await hosted(spec, tmp_path / "a.db", script)

    baseline = loop.store.experiments(loop.run_id)[0]
    by_text = {r["description"]: r for r in candidates(loop)}
    slow, fast, third = (by_text[d] for d in ("x: 7 y: b slow: 1.5", "x: 6 y: b", "x: 8 y: a"))
    assert fast["verdict"] == "kept" and fast["finished"] < slow["finished"]
    assert slow["parent"] == baseline["id"]  # the tree keeps where it came from
    assert slow["verdict"] == "kept" and slow["delta"] == -1  # against #fast (loss 1), not 9
    assert json.loads(slow["decision_json"])["proposed_from"] == baseline["id"]
    assert third["parent"] == fast["id"] and third["verdict"] == "reverted"
    run = loop.store.get_run(loop.run_id)
    assert (run["best_experiment"], run["best_score"]) == (slow["id"], 0)
    assert "slow: 1" in (params_workspace / "params.yaml").read_text()  # the best on disk
    # A veto of it goes back to the best it replaced, not to the parent they share.
    assert (await loop.veto(slow["id"])).startswith("reverted")
    assert loop.store.get_run(loop.run_id)["best_experiment"] == fast["id"]
    assert (params_workspace / "params.yaml").read_text() == "x: 6\ny: b\n"


async def test_a_candidate_built_on_a_vetoed_best_is_not_decided_against_the_next(
        params_workspace: Path, tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "veto", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 3})
    # The first keep (loss 1) lands at once; a slow child of it (loss 0) is vetoed with it.
    script = Script(["x: 6\ny: b\n", "x: 0\ny: a\nslow: 0.6\n", "x: 7\ny: b\nslow: 2\n"])
    vetoed: list[str] = []

    async def during(loop: RunLoop) -> None:
        first = await _kept(loop)
        await until(lambda: any("slow" in c.mutation.description and c.parent == first
                                for c in loop.in_flight.values()), what="a child in flight")
        vetoed.append(await loop.veto(first))

    loop = await hosted(spec, tmp_path / "a.db", script, during)
    assert vetoed[0].startswith("reverted #")
    slow = next(r for r in candidates(loop) if "slow: 2" in r["description"])
    assert slow["verdict"] == "reverted" and "no longer the best" in slow["reason"]
    assert loop.store.get_run(loop.run_id)["best_score"] == 9  # the baseline's again


async def _kept(loop: RunLoop) -> int:
    """The first kept candidate's id, once it is the best."""
    await until(lambda: loop.best_id is not None and loop.store.experiment(loop.best_id)[
        "kind"] == "candidate", what="a keep")
    assert loop.best_id is not None
    return loop.best_id


async def test_a_pause_stops_new_candidates_and_a_resume_fills_the_free_slot_at_once(
        params_workspace: Path, tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "pause", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 4})
    script = Script(["x: 2\ny: a\nslow: 2.5\n", "x: 3\ny: a\nslow: 0.3\n", "x: 4\ny: a\n",
                     "x: 5\ny: a\n"])
    seen: list[object] = []

    async def during(loop: RunLoop) -> None:
        await until(lambda: len(loop.in_flight) == 2, what="two in flight")
        loop.paused = True
        await until(lambda: len(loop.in_flight) == 1, what="the fast one decided")
        await asyncio.sleep(0.3)  # nothing new starts while paused
        seen.append([r["verdict"] for r in candidates(loop)])
        loop.paused = False
        loop.wake()
        await until(lambda: len(loop.in_flight) == 2, timeout=1.5,
                    what="the free slot filled while the slow one runs")
        seen.append(any("slow: 2.5" in c.mutation.description
                        for c in loop.in_flight.values()))

    loop = await hosted(spec, tmp_path / "a.db", script, during)
    assert seen == [["running", "kept"], True]
    assert len(candidates(loop)) == 4


async def test_a_stop_interrupts_every_slot_in_flight(params_workspace: Path,
                                                      tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "stop", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 9})
    script = Script(["x: 2\ny: a\nslow: 30\n", "x: 4\ny: a\n", "x: 3\ny: a\nslow: 30\n"])

    async def during(loop: RunLoop) -> None:
        await until(lambda: len(loop.pool.busy) == 2 and all(
            "slow" in c.mutation.description for c in loop.in_flight.values()),
            what="two slow ones in flight")
        loop.stopping = True  # what `stop` does
        loop.wake()
        loop.cancel_wave()

    loop = await hosted(spec, tmp_path / "a.db", script, during)
    rows = candidates(loop)
    assert [r["verdict"] for r in rows] == ["interrupted", "kept", "interrupted"]
    assert loop.store.get_run(loop.run_id)["status"] == "stopped"


async def test_proposals_made_ahead_keep_the_slots_fed_and_never_overshoot_max_rounds(
        params_workspace: Path, tmp_path: Path) -> None:
    slow_when_asked(params_workspace)
    spec = make_spec(params_workspace, "ahead", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 8})
    # One number a line, as a model's edits would be; x: 6 (a keep) comes second.
    texts = [f"x: {x}\ny: a\nslow: 0.{x}\n" for x in (2, 6, 3, 4, 5, 1, 0, 8, 9, 2, 3, 4)]
    script = Script(texts, reads_history=True, latency=0.2)
    loop = await hosted(spec, tmp_path / "a.db", script)

    rows = loop.store.experiments(loop.run_id)
    scored = [r for r in rows if r["kind"] == "candidate" and r["verdict"] != "abandoned"]
    assert len(scored) == 8 and max(r["round"] for r in rows) == 8
    assert loop.store.get_run(loop.run_id)["rounds"] == 8
    assert all(r["verdict"] != "running" for r in rows)
    # (two slots, proposals as long as evaluations: about 1.5 x 2 of them in the making)
    assert loop.stream.latency and loop.stream.evaluation and 2 <= loop.stream.wanted() <= 4
    # Nothing asked for was lost: every proposal is a row (used, abandoned, or the stop's).
    assert len(rows) - 1 == script.made


async def test_a_hand_edit_while_two_are_scored_interrupts_the_stale_one(
        params_workspace: Path, tmp_path: Path) -> None:
    """A keep finds the target edited by hand (the run's next baseline, engine/versions.py):
    the candidate still in flight was built on what the person replaced, so it is not
    decided against their version (a keep of it would write over their edit)."""
    slow_when_asked(params_workspace)
    hand = "x: 1\ny: b\n# by hand\n"
    write(params_workspace / "score.py", f"""
        import os, time, yaml
        p = yaml.safe_load(open("params.yaml"))
        if p.get("slow") == 0.8:  # the person edits the file while this one is scored
            open({str(params_workspace / "params.yaml")!r}, "w").write({hand!r})
        time.sleep(p.get("slow", 0))
        print(f"METRIC loss={{abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}}")
    """)
    spec = make_spec(params_workspace, "hand", command=f"{PY} score.py", parallel=2,
                     workers=[{"kind": "local", "slots": 2}], stop={"max_rounds": 3})
    script = Script(["x: 6\ny: a\nslow: 0.8\n", "x: 7\ny: b\nslow: 20\n", "x: 5\ny: b\n"])
    loop = await hosted(spec, tmp_path / "a.db", script)

    rows = loop.store.experiments(loop.run_id)
    stale = next(r for r in rows if "slow: 20" in r["description"])
    assert stale["verdict"] == "interrupted" and "hand edit" in stale["reason"]
    baselines = [r for r in rows if r["kind"] == "baseline"]
    assert [b["description"] for b in baselines] == ["baseline", "baseline: edited by hand"]
    assert loop.store.version_files(baselines[1]["id"]) == {"params.yaml": hand}
