"""The params mutator's search on the demo classifier's landscape: it must reach the
checklist's target within a budget of evaluations the demo has in its 3 minutes.

Training the real network 60 times over 3 seeds takes minutes, and its `fast` item depends
on the machine's load; so the landscape is a model of it, in milliseconds and the same on
every machine: the demo's own parameters, spec items and starting point; accuracy that wants
capacity (hidden units) and training (steps × learning rate / (1 − momentum)) and collapses
past a stable learning rate; a size bar on hidden units; a time bar on steps × width; a
train/validation gap that grows with training and shrinks with weight decay; each of the 3
inputs (seeds) a little different. The items are checked as a run checks them
(engine/evaluators/checks.py), margins included, and the mutator is driven as the loop
drives it: propose from the best file, keep a strict improvement, feedback, then observe.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from pathlib import Path
from typing import Any

import yaml

from engine import spec as specs
from engine.evaluators.checks import check_margin, check_text
from engine.model import KEPT, REVERTED, Evaluation, ItemResult, Proposal
from engine.mutators.paramfile import read_params, write_params
from engine.mutators.params import ParamsMutator
from engine.spec import Param
from engine.spec import ParamsMutator as ParamsConfig

DEMO = Path(__file__).resolve().parent.parent / "checklists" / "demo"
SPEC = yaml.safe_load((DEMO / "classifier.yaml").read_text())
PARAMS = {n: Param(**p) for n, p in SPEC["mutator"]["params"].items()}
ITEMS = [specs.Item(**i) for i in SPEC["evaluate"]["items"]]
START = yaml.safe_load((DEMO / "classifier" / "params.yaml").read_text())
SEEDS = {1: 0.002, 2: -0.003, 3: 0.0}  # each input's own offset of accuracy
#: Evaluations the demo makes in under 3 minutes on a quiet 2-core machine (its runs end
#: at 80 rounds or 2.5 minutes).
BUDGET = 60


def train(p: dict[str, Any], seed: int) -> dict[str, float]:
    """What train.py prints, from a model of it."""
    hidden, batch = int(p["hidden"]), int(p["batch_size"])
    steps = int(p["epochs"]) * math.ceil(1347 / batch)
    eta = float(p["lr"]) / (1 - float(p["momentum"]))
    noise = random.Random(f"{seed}/{sorted(p.items())}")
    if eta > (3.0 if p["activation"] == "tanh" else 1.5):  # diverged
        acc, gap = 0.1, 0.0
    else:
        cap = 0.995 - 0.5 / hidden + 0.002 * (p["activation"] == "relu") - 2 * float(p["l2"])
        acc = (0.1 + (cap - 0.1) * (1 - math.exp(-steps * eta / 4)) + SEEDS[seed]
               + noise.gauss(0, 0.002))
        gap = (0.004 + 0.009 * math.log10(1 + steps * eta / 10) * (hidden / 24) ** 0.5
               - 2 * float(p["l2"]) + noise.gauss(0, 0.002))
    return {"val_acc": round(acc, 4), "gap": round(gap, 4),
            "train_s": round(steps * (hidden + 20) * 4e-6, 3), "params": 75 * hidden + 10}


def evaluate(values: dict[str, Any]) -> Evaluation:
    results = []
    for seed in SEEDS:
        sample = json.dumps(train(values, seed))
        for item in ITEMS:
            ok, evidence = check_text(item, sample)
            results.append(ItemResult(item.name, ok, str(seed), 0, evidence,
                                      check_margin(item, sample)))
    return Evaluation("ok", sum(r.passed for r in results) / len(results), results)


async def climb(seed: int, budget: int = BUDGET) -> int | None:
    """Evaluations (the baseline is the first) until the target, or None."""
    path, target = "params.yaml", SPEC["stop"]["target"]
    mutator = ParamsMutator(ParamsConfig(kind="params", file=path, seed=seed, params=PARAMS))
    best_text = write_params("".join(f"{n}: 0\n" for n in PARAMS), path,
                             {n: START[n] for n in PARAMS})
    best = evaluate(START).score
    observe = getattr(mutator, "observe", None)  # (as engine/proposer.py calls it)
    for evaluations in range(2, budget + 1):
        mutation = await mutator.propose(Proposal("demo", {path: best_text}, [], [], [], best))
        evaluation = evaluate(read_params(mutation.files[path], path, list(PARAMS)))
        kept = evaluation.score > best
        mutator.feedback(mutation, KEPT if kept else REVERTED)
        if observe is not None:
            observe(mutation, [evaluation])
        if kept:
            best, best_text = evaluation.score, mutation.files[path]
        if best >= target:
            return evaluations
    return None


def test_the_model_has_the_demo_s_plateau_and_its_way_out() -> None:
    """The start scores 0.5; the 0.75 plateau the old climber stopped on (accurate but too
    big) is there; the target is reachable."""
    assert evaluate(START).score == 0.5
    big = dict(START, lr=0.159, batch_size=23)
    assert evaluate(big).score == 0.75
    assert {r.item for r in evaluate(big).items if not r.passed} == {"small"}
    way_out = dict(big, hidden=26, epochs=12, l2=0.0003)
    assert evaluate(way_out).score == 1.0


def test_the_search_reaches_the_classifier_s_target_within_the_demo_s_budget() -> None:
    """Over 10 seeds, most reach all four items within 60 evaluations; told verdicts alone
    (as before scores and margins reached it) it did in 5 of these 10."""
    reached = [asyncio.run(climb(seed)) for seed in range(10)]
    hits = [n for n in reached if n is not None]
    assert len(hits) >= 7, reached
    assert sorted(hits)[len(hits) // 2] <= 40, reached


def test_margins_are_read_from_numeric_checks_only() -> None:
    accurate, fast = ITEMS[0], ITEMS[1]
    assert check_margin(accurate, '{"val_acc": 0.9603}') < 0 < check_margin(
        accurate, '{"val_acc": 0.98}')
    assert check_margin(fast, '{"train_s": 0.15}') == 0.5  # half the bar to spare
    assert check_margin(fast, '{"train_s": "slow"}') is None
    assert check_margin(fast, "no json at all") is None
    assert check_margin(specs.Item(name="q", question="Good?"), '{"x": 1}') is None
    assert check_margin(specs.Item(name="z", question="Zero?", json={"path": "x", "max": 0}),
                        '{"x": 2}') == -2.0  # a bound of 0: in units of 1


async def test_a_run_hands_the_mutator_each_candidate_s_score_and_margins(tmp_path):
    """Through the real loop: every decided candidate reaches `observe` with its items'
    margins, and the search's best-ranked version is one that came nearest the bar."""
    from engine.host import Host
    from engine.spec import load_spec
    from engine.store import Store
    from tests.conftest import write

    ws = tmp_path / "ws"
    write(ws / "p.yaml", "x: 1\n")
    write(ws / "out.sh", """x=$(sed -n 's/x: //p' p.yaml); echo "{\\"x\\": $x}"\n""")
    spec = write(tmp_path / "s.yaml", """
        name: margins
        target: {workspace: ws, files: [p.yaml], protected: [out.sh]}
        mutator: {kind: params, file: p.yaml, seed: 3, params: {x: {type: int, min: 0, max: 50}}}
        evaluate:
          kind: checklist
          produce: {kind: command, command: sh out.sh}
          inputs: ["a"]
          items:
            - {name: big, question: Is x at least 40?, json: {path: x, min: 40}}
        stop: {max_rounds: 6}
    """)
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    search = loop.mutator.search
    rows = [r for r in store.experiments(store.get_run("margins")["id"]) if r["kind"] == "candidate"]
    assert len(search.ranks) == len(rows) == 6  # one observation per candidate
    key, rank = search.ranks.top()
    # A larger x is nearer the bar (or further inside it): the largest ranks first, among
    # candidates that mostly tie on the score (the newest does not win a tie).
    assert key[0] == max(k[0] for k in search.ranks._ranks)
    assert rank[1] != float("-inf")  # its margin arrived


def test_a_step_from_a_frontier_member_starts_there_not_at_the_best_ranked():
    """Beam and frontier hand the mutator a member that is not the best on purpose: its
    steps start from that member, even when another version ranks higher (near misses);
    from the run's best they may start at the better-ranked tie."""
    from engine.mutators.paramsearch import Search

    params = {n: specs.Param(type="float", min=0, max=10) for n in "abc"}
    member, ranked = {n: 1.0 for n in "abc"}, {n: 9.0 for n in "abc"}

    def steps(follow_ranks: bool) -> list[dict]:
        search = Search(params, 4)
        search.ranks.add(search.space.key(member), 0.5, -0.5)
        search.ranks.add(search.space.key(ranked), 0.5, -0.01)  # a tie that came nearer
        search._pick_move = lambda: "local"  # type: ignore[method-assign]
        return [search.propose(member, best_score=0.5, follow_ranks=follow_ranks)[0]
                for _ in range(10)]

    near = lambda values, centre: all(abs(v - centre) < 4 for v in values.values())  # noqa: E731
    assert all(near(v, 1.0) for v in steps(follow_ranks=False))
    assert all(near(v, 9.0) for v in steps(follow_ranks=True))
