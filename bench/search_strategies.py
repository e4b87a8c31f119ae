"""Search strategies of the loop (engine/search.py): greedy vs beam vs frontier, with the
built-in params mutator, the same evaluation budget and many seeds.

Each strategy is a function `(objective, budget, seed) -> trace` (the best score after each
evaluation), the form bench/search.py takes: `LOOP_STRATEGIES` plug into its STRATEGIES.
Run alone, this file prints, per objective and budget, the median best score, the share of
seeds reaching the target and the median evaluations to it, each as a ratio to greedy:

- `deceptive`: a short steep climb from the start to a local peak (0.7) and, the other way,
  a long gentle ramp to the global one (1.0): every step up the ramp beats its parent but,
  until near the top, not the peak, so greedy search that found the peak stays there;
  scores in steps of 0.02.
- `classifier`: the demo's digits classifier (checklists/demo/classifier.yaml), its train.py
  trained in-process over the spec's seeds and scored by its four items (slow: one seed of
  it per strategy by default; `--classifier-seeds N`).

The driver is the loop's own search: engine.search's strategy picks parents from
engine.versions' frontier, the mutator proposes from the parent's file, a candidate is kept
when it beats its parent (the `greater` rule), the frontier's best is the run's best.

    python bench/search_strategies.py [--seeds 20] [--classifier-seeds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.decide import improvement  # noqa: E402
from engine.model import KEPT, REVERTED, Evaluation, MutationError, Proposal  # noqa: E402
from engine.mutators.paramfile import read_params, write_param  # noqa: E402
from engine.search import STRATEGIES as SEARCHES  # noqa: E402
from engine.spec import Param, Search  # noqa: E402
from engine.spec import ParamsMutator as ParamsConfig  # noqa: E402
from engine.versions import Versions  # noqa: E402
from engine.workspace import Workspace  # noqa: E402

BUDGETS = (30, 80)
DEMO = ROOT / "checklists" / "demo"
FILE = "params.yaml"


@dataclass
class Objective:
    """A score to maximize over some parameters, from a starting point."""

    name: str
    params: dict[str, Param]
    start: dict[str, Any]
    target: float
    evaluate: Callable[[dict[str, Any]], float]


def loop_search(strategy: str, width: int = 4, pick: str = "softmax",
                ) -> Callable[[Any, int, int], list[float]]:
    """A bench strategy that runs the loop's search `strategy` with the params mutator."""

    def run(objective: Any, budget: int, seed: int) -> list[float]:
        return asyncio.run(_drive(objective, budget, seed, Search(
            strategy=strategy, width=width, pick=pick, seed=seed)))

    run.__name__ = strategy
    return run


async def _drive(objective: Any, budget: int, seed: int, config: Search) -> list[float]:
    from engine.mutators.params import ParamsMutator

    names = list(objective.params)
    mutator = ParamsMutator(ParamsConfig(kind="params", file=FILE, seed=seed,
                                         params=objective.params))
    text = "".join(f"{name}: 0\n" for name in names)
    for name, value in objective.start.items():
        text = write_param(text, FILE, name, value)
    workspace = Workspace(ROOT, [FILE], [], [], "bench")
    versions = Versions(None, workspace, "mean", "maximize")  # type: ignore[arg-type]
    versions.width = 1 if config.strategy == "greedy" else config.width
    search = SEARCHES[config.strategy](versions, config)
    score = objective.evaluate(objective.start)
    versions.set_best(versions.make(0, {FILE: text}, [Evaluation("ok", score=score)], None))
    scores, wasted = [score], 0
    while len(scores) < budget and wasted < budget:
        parent = search.parents(1)[0]
        try:
            mutation = await mutator.propose(Proposal("bench", dict(parent.files), [], [], [],
                                                      parent.score))
        except MutationError:
            wasted += 1  # a round without an evaluation: it costs rounds, not budget
            continue
        files = {**parent.files, **mutation.files}
        score = objective.evaluate(read_params(files[FILE], FILE, names))
        scores.append(score)
        verdict = KEPT if score > (parent.score or -math.inf) else REVERTED
        if verdict == KEPT:
            version = versions.make(len(scores), files, [Evaluation("ok", score=score)],
                                    parent.exp_id)
            best = versions.best
            if best is None or improvement(score, best.score or -math.inf, "maximize") > 0:
                versions.set_best(version)
            else:
                versions.admit(version)
        mutator.feedback(mutation, verdict)
    best, out = -math.inf, []
    for s in scores[:budget]:
        best = max(best, s)
        out.append(best)
    return out + [best] * (budget - len(out))


LOOP_STRATEGIES = {"greedy": loop_search("greedy"), "beam": loop_search("beam"),
                   "frontier": loop_search("frontier")}


# ------------------------------------------------------------------ objectives


def deceptive() -> Objective:
    """From the start (a = 0.5, b = 0.2) a steep climb (a down) leads to a local peak of 0.7
    at (0.2, 0.2); a gentle ramp (b up, a kept near 0.5) leads to 1.0 at b = 1. From the
    peak no step the mutator can take reaches a part of the ramp above 0.7."""
    params = {"a": Param(type="float", min=0, max=1), "b": Param(type="float", min=0, max=1),
              "c": Param(type="float", min=0, max=1)}

    def evaluate(v: dict[str, Any]) -> float:
        a, b, c = float(v["a"]), float(v["b"]), float(v["c"])
        off = (c - 0.5) ** 2  # a nuisance parameter: best left alone
        local = 0.7 - 4 * ((a - 0.2) ** 2 + (b - 0.2) ** 2) - off
        ramp = 0.4 + 0.75 * (b - 0.2) - 2 * (a - 0.5) ** 2 - off
        return math.floor(max(local, ramp, 0.0) * 50) / 50

    return Objective("deceptive", params, {"a": 0.5, "b": 0.2, "c": 0.5}, 0.9, evaluate)


@functools.cache
def _train_module() -> Any:
    sys.path.insert(0, str(DEMO / "classifier"))
    import train  # the demo's own train.py

    train.load = functools.cache(train.load)
    return train


def classifier() -> Objective:
    spec = yaml.safe_load((DEMO / "classifier.yaml").read_text())
    params = {n: Param(**p) for n, p in spec["mutator"]["params"].items()}
    start = yaml.safe_load((DEMO / "classifier" / "params.yaml").read_text())
    seeds = [int(s) for s in spec["evaluate"]["inputs"]]
    items = [i["json"] for i in spec["evaluate"]["items"]]

    def evaluate(values: dict[str, Any]) -> float:
        import numpy as np

        train, passed = _train_module(), 0
        with np.errstate(all="ignore"):
            for seed in seeds:
                out = train.train(values, seed)
                passed += sum(i.get("min", -math.inf) <= out[i["path"]] <= i.get("max", math.inf)
                              for i in items)
        return passed / (len(seeds) * len(items))

    return Objective("classifier", params, {n: start[n] for n in params},
                     float(spec["stop"].get("target") or 1.0), evaluate)


OBJECTIVES = {"deceptive": deceptive, "classifier": classifier}


# ------------------------------------------------------------------ report


def _job(args: tuple[str, str, int, int]) -> tuple[str, str, list[float]]:
    objective, strategy, budget, seed = args
    return objective, strategy, LOOP_STRATEGIES[strategy](OBJECTIVES[objective](), budget, seed)


def _summary(traces: list[list[float]], budget: int, target: float) -> tuple[float, float, float]:
    bests = [t[budget - 1] for t in traces]
    hits = [next((i + 1 for i, s in enumerate(t[:budget]) if s >= target - 1e-9), budget + 1)
            for t in traces]
    return (statistics.median(bests), sum(h <= budget for h in hits) / len(hits),
            statistics.median(hits))


def _ratio(value: float, base: float) -> str:
    return ("  –  " if value == 0 else "  ∞  ") if base == 0 else f"{value / base:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--classifier-seeds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    budget = max(BUDGETS)
    seeds = {"deceptive": args.seeds, "classifier": args.classifier_seeds}
    jobs = [(o, s, budget, seed) for o in OBJECTIVES for s in LOOP_STRATEGIES
            for seed in range(seeds[o])]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        results = pool.map(_job, jobs, chunksize=1)
    traces: dict[tuple[str, str], list[list[float]]] = {}
    for objective, strategy, trace in results:
        traces.setdefault((objective, strategy), []).append(trace)
    print("ratios are to greedy search in this run; evals to target: median, a seed that "
          "missed counts as budget + 1")
    for objective in OBJECTIVES:
        target = OBJECTIVES[objective]().target
        for b in BUDGETS:
            print(f"\n{objective} @ {b} evaluations, {seeds[objective]} seeds "
                  f"(target {target:g})")
            print(f"  {'strategy':<10} {'best':>6} {'×':>5}   {'hit':>5} {'×':>5}   "
                  f"{'to target':>9} {'×':>5}")
            base = _summary(traces[(objective, "greedy")], b, target)
            for s in LOOP_STRATEGIES:
                best, hit, to = _summary(traces[(objective, s)], b, target)
                print(f"  {s:<10} {best:6.3f} {_ratio(best, base[0])}   {hit:5.0%} "
                      f"{_ratio(hit, base[1])}   {to:9.1f} {_ratio(to, base[2])}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
