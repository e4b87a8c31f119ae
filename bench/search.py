"""Search quality: the built-in params mutator against a one-at-a-time climber, random
search and Optuna's TPE, and the loop's search strategies against each other.

Each strategy gets the same objective, the same number of evaluations (the starting point
is the first of them, as a run's baseline is) and many seeds. Printed per objective and
budget: the median best score, the share of seeds that reached the target and the median
evaluations to reach it (seeds that did not count as the budget + 1), each also as a ratio
to greedy (the loop's default search), random search and TPE measured in the same run.

Strategies: `params` is the mutator as a run drives it (verdicts, then each candidate's
score and its checks' margins); `params-scores` the same without margins (a judge's yes/no
has none); `params-verdicts` told verdicts alone (the mutator before scores reached it);
`one-at-a-time` moves one parameter at a time and keeps a strict improvement.

Objectives:
- `classifier`: the demo's digits classifier (checklists/demo/classifier.yaml): its
  train.py trained in-process over the spec's three seeds, scored by the spec's four items;
  a pass-rate score with plateaus (target 1.0).
- `deceptive`: 6 parameters (4 floats, one on a log scale, an int, a choice); a wide basin
  around the start peaks at 0.7, a narrower one far away at 1.0; scores come in steps of
  0.05 (plateaus, as pass rates make) (target 0.85).
- `analytic`: a smooth 5-parameter function (3 floats, an int, a choice) (target 0.9).
- `trap`: deceptive for one branch (what beam and frontier search are for): 5 parameters;
  the first steps fall into a broad basin peaking at 0.8, and the global optimum (1.0) is
  up a second basin whose first step scores below the first basin's versions: a version
  that is not the best is the right parent (target 0.9; 50 and 100 evaluations).

A strategy is a function `(objective, budget, seed) -> trace`, the best score after each
evaluation: the params mutator as a run drives it, random search, TPE, and the loop's
search strategies (engine/search.py: greedy, beam, frontier, each with the params mutator).
TPE is skipped with a note when optuna is not installed (`pip install -e ".[bench]"`).

    python bench/search.py                       # everything, 10 seeds, 2 processes
    python bench/search.py --objective deceptive --seeds 30
    # the loop's strategies against greedy search, (a) the demo and (b) the trap:
    python bench/search.py --baseline greedy --strategy beam --strategy frontier \
        --objective classifier --objective trap --seeds 20
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import multiprocessing
import random
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

from engine import spec as specs  # noqa: E402
from engine.evaluators.checks import check_margin, check_text  # noqa: E402
from engine.model import (  # noqa: E402
    KEPT,
    REVERTED,
    Evaluation,
    ItemResult,
    MutationError,
    Proposal,
)
from engine.mutators.paramfile import read_params, write_params  # noqa: E402
from engine.spec import Param  # noqa: E402
from engine.spec import ParamsMutator as ParamsConfig  # noqa: E402

BUDGETS = (30, 80)
DEMO = ROOT / "checklists" / "demo"


@dataclass
class Objective:
    """A score to maximize over some parameters, from a starting point."""

    name: str
    params: dict[str, Param]
    start: dict[str, Any]
    target: float
    evaluate: Callable[[dict[str, Any]], float]
    #: The evaluation with its items (and their margins), for a checklist's score.
    evaluation: Callable[[dict[str, Any]], Evaluation] | None = None
    #: The evaluation budgets reported (every strategy gets the same).
    budgets: tuple[int, ...] = BUDGETS


Strategy = Callable[[Objective, int, int], list[float]]


def _trace(scores: list[float], budget: int) -> list[float]:
    """Best so far after each evaluation, padded to the budget (a strategy that stops
    early keeps its best)."""
    best, out = -math.inf, []
    for score in scores[:budget]:
        best = max(best, score)
        out.append(best)
    return out + [best] * (budget - len(out))


# ------------------------------------------------------------------ strategies


def random_search(objective: Objective, budget: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    scores = [objective.evaluate(objective.start)]
    while len(scores) < budget:
        scores.append(objective.evaluate({n: _sample(p, rng) for n, p in
                                          objective.params.items()}))
    return _trace(scores, budget)


def _sample(param: Param, rng: random.Random) -> Any:
    if param.type == "choice":
        return rng.choice(param.values or [])
    lo, hi = float(param.min), float(param.max)  # type: ignore[arg-type]
    if param.scale == "log":
        value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    else:
        value = rng.uniform(lo, hi)
    return int(min(max(round(value), lo), hi)) if param.type == "int" else value


def tpe(objective: Objective, budget: int, seed: int) -> list[float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.enqueue_trial(objective.start)
    scores: list[float] = []

    def run(trial: optuna.Trial) -> float:
        values = {}
        for name, p in objective.params.items():
            if p.type == "choice":
                values[name] = trial.suggest_categorical(name, p.values)
            elif p.type == "int":
                values[name] = trial.suggest_int(name, int(p.min), int(p.max),
                                                 log=p.scale == "log")
            else:
                values[name] = trial.suggest_float(name, p.min, p.max, log=p.scale == "log")
        scores.append(objective.evaluate(values))
        return scores[-1]

    study.optimize(run, n_trials=budget)
    return _trace(scores, budget)


def one_at_a_time(objective: Objective, budget: int, seed: int) -> list[float]:
    """One parameter at a time: a step of 0.2 of its range (a choice: another value) from
    the best, kept when strictly better."""
    from engine.mutators.paramspace import Space, reflect

    rng, space = random.Random(seed), Space(objective.params)
    best = dict(objective.start)
    scores = [objective.evaluate(best)]
    while len(scores) < budget:
        name = rng.choice(space.names)
        values = dict(best)
        param = objective.params[name]
        if param.type == "choice":
            values[name] = rng.choice([v for v in param.values or [] if v != best[name]])
        else:
            values[name] = space.value(name, reflect(space.unit(name, best[name])
                                                     + rng.gauss(0, 0.2)))
        scores.append(objective.evaluate(values))
        if scores[-1] > max(scores[:-1]):
            best = values
    return _trace(scores, budget)


def params_mutator(objective: Objective, budget: int, seed: int, scores_seen: bool = True,
                   margins: bool = True) -> list[float]:
    """The built-in mutator as a run drives it: propose from the best file, evaluate, keep
    when strictly better (the `greater` rule), feedback; then (`scores_seen`) the
    candidate's evaluation, with its checks' margins unless told not to."""
    from engine.mutators.params import ParamsMutator

    path = "params.yaml"
    mutator = ParamsMutator(ParamsConfig(kind="params", file=path, seed=seed,
                                         params=objective.params))
    text = "".join(f"{name}: 0\n" for name in objective.params)
    best_text = write_params(text, path, objective.start)
    scores = [objective.evaluate(objective.start)]
    best = scores[0]

    async def drive() -> None:
        nonlocal best, best_text
        wasted = 0
        while len(scores) < budget and wasted < budget:
            try:
                mutation = await mutator.propose(Proposal("bench", {path: best_text}, [], [],
                                                          [], best))
            except MutationError:
                wasted += 1  # a round without an evaluation: it costs rounds, not budget
                continue
            files = mutation.files[path]
            values = read_params(files, path, list(objective.params))
            if objective.evaluation is not None:
                evaluation = objective.evaluation(values)
                if not margins:
                    evaluation.items = [ItemResult(i.item, i.passed, i.input)
                                        for i in evaluation.items]
            else:
                evaluation = Evaluation("ok", objective.evaluate(values))
            score = evaluation.score
            scores.append(score)
            verdict = KEPT if score > best else REVERTED
            if verdict == KEPT:
                best, best_text = score, files
            mutator.feedback(mutation, verdict)
            if scores_seen:
                mutator.observe(mutation, [evaluation])

    asyncio.run(drive())
    return _trace(scores, budget)


STRATEGIES: dict[str, Strategy] = {
    "params": params_mutator,
    "params-scores": functools.partial(params_mutator, margins=False),
    "params-verdicts": functools.partial(params_mutator, scores_seen=False),
    "one-at-a-time": one_at_a_time, "random": random_search, "tpe": tpe}
BASELINE = "random"
#: Ratios are printed to each of these that ran.
BASELINES = ("greedy", "random", "tpe")


# ------------------------------------------------------------------ the loop's search strategies


def loop_search(strategy: str, **settings: Any) -> Strategy:
    """The loop's search `strategy` (engine/search.py: greedy, beam, frontier) with the
    params mutator, at the spec's defaults unless `settings` say otherwise: the strategy
    picks parents from engine.versions' frontier, the mutator proposes from the parent's
    file, a candidate is kept when it beats its parent (the `greater` rule), the
    frontier's best is the run's best."""

    def run(objective: Objective, budget: int, seed: int) -> list[float]:
        from engine.spec import Search

        return asyncio.run(_drive(objective, budget, seed, Search(
            strategy=strategy, seed=seed, **settings)))

    run.__name__ = strategy
    return run


async def _drive(objective: Objective, budget: int, seed: int, config: Any) -> list[float]:
    from engine.model import Evaluation
    from engine.mutators.params import ParamsMutator
    from engine.search import STRATEGIES as SEARCHES
    from engine.tree import rank
    from engine.versions import Versions
    from engine.workspace import Workspace

    path, names = "params.yaml", list(objective.params)
    mutator = ParamsMutator(ParamsConfig(kind="params", file=path, seed=seed,
                                         params=objective.params))
    text = write_params("".join(f"{name}: 0\n" for name in names), path, objective.start)
    versions = Versions(None, Workspace(ROOT, [path], [], [], "bench"),  # type: ignore[arg-type]
                        "mean", "maximize")
    versions.width = 1 if config.strategy == "greedy" else config.width
    search = SEARCHES[config.strategy](versions, config)
    score = objective.evaluate(objective.start)
    versions.set_best(versions.make(0, {path: text}, [Evaluation("ok", score=score)], None))
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
        values = read_params(files[path], path, names)
        evaluation = (objective.evaluation(values) if objective.evaluation is not None
                      else Evaluation("ok", objective.evaluate(values)))
        score = evaluation.score
        scores.append(score)
        verdict = KEPT if score > (parent.score or -math.inf) else REVERTED
        if verdict == KEPT:
            version = versions.make(len(scores), files, [Evaluation("ok", score=score)],
                                    parent.exp_id)
            best = versions.best
            if best is None or rank(version, "maximize") > rank(best, "maximize"):
                versions.set_best(version)
            else:
                versions.admit(version)
        mutator.feedback(mutation, verdict)
        mutator.observe(mutation, [evaluation])  # (as engine/proposer.py does)
    return _trace(scores, budget)


STRATEGIES.update({"greedy": loop_search("greedy"), "beam": loop_search("beam"),
                   "frontier": loop_search("frontier")})


# ------------------------------------------------------------------ objectives


@functools.cache
def _classifier_module() -> Any:
    sys.path.insert(0, str(DEMO / "classifier"))
    import train  # the demo's own train.py

    train.load = functools.cache(train.load)  # the data set is read once, not per seed
    return train


def classifier() -> Objective:
    spec = yaml.safe_load((DEMO / "classifier.yaml").read_text())
    params = {n: Param(**p) for n, p in spec["mutator"]["params"].items()}
    start = yaml.safe_load((DEMO / "classifier" / "params.yaml").read_text())
    seeds = [int(s) for s in spec["evaluate"]["inputs"]]
    items = [specs.Item(**i) for i in spec["evaluate"]["items"]]

    def evaluation(values: dict[str, Any]) -> Evaluation:
        """The spec's items checked as a run checks them, margins included."""
        import json

        import numpy as np

        train = _classifier_module()
        results = []
        with np.errstate(all="ignore"):
            for seed in seeds:
                sample = json.dumps(train.train(values, seed))
                for item in items:
                    ok, evidence = check_text(item, sample)
                    results.append(ItemResult(item.name, ok, str(seed), 0, evidence,
                                              check_margin(item, sample)))
        return Evaluation("ok", sum(r.passed for r in results) / len(results), results)

    return Objective("classifier", params, {n: start[n] for n in params},
                     spec["stop"]["target"], lambda v: evaluation(v).score, evaluation)


def _unit(param: Param, value: float) -> float:
    lo, hi = float(param.min), float(param.max)  # type: ignore[arg-type]
    if param.scale == "log":
        return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (float(value) - lo) / (hi - lo)


def deceptive() -> Objective:
    params = {"a": Param(type="float", min=0, max=1), "b": Param(type="float", min=0, max=1),
              "c": Param(type="float", min=0.001, max=10, scale="log"),
              "d": Param(type="float", min=-5, max=5), "k": Param(type="int", min=0, max=20),
              "mode": Param(type="choice", values=["w", "x", "y", "z"])}
    near, far = (0.25, 0.3, 0.3, 0.2), (0.8, 0.75, 0.85, 0.7)

    def evaluate(v: dict[str, Any]) -> float:
        u = [_unit(params[n], v[n]) for n in "abcd"]
        local = 0.7 * math.exp(-sum((x - c) ** 2 for x, c in zip(u, near, strict=True))
                               / (2 * 0.3 ** 2))
        local *= (1 - abs(v["k"] - 5) / 40) * (1.0 if v["mode"] == "w" else 0.85)
        best = math.exp(-sum((x - c) ** 2 for x, c in zip(u, far, strict=True)) / (2 * 0.3 ** 2))
        best *= math.exp(-((v["k"] - 15) / 6) ** 2) * (1.0 if v["mode"] == "y" else 0.7)
        return math.floor(max(local, best) * 20) / 20  # plateaus, as a pass rate has

    start = {"a": 0.35, "b": 0.35, "c": 0.05, "d": -2.0, "k": 6, "mode": "x"}
    return Objective("deceptive", params, start, 0.85, evaluate)


def analytic() -> Objective:
    params = {"x": Param(type="float", min=-2, max=2), "y": Param(type="float", min=0, max=1),
              "rate": Param(type="float", min=1e-4, max=1, scale="log"),
              "n": Param(type="int", min=1, max=64),
              "kind": Param(type="choice", values=["p", "q", "r"])}

    def evaluate(v: dict[str, Any]) -> float:
        lr = math.log10(v["rate"])
        core = (-(v["x"] - 0.7) ** 2 - 2 * (v["y"] - 0.3) ** 2 - 0.5 * (lr + 2.5) ** 2
                - ((v["n"] - 40) / 20) ** 2 + 0.6 * (v["x"] - 0.7) * (v["y"] - 0.3))
        return math.exp(core) * {"p": 0.8, "q": 1.0, "r": 0.6}[v["kind"]]

    start = {"x": -1.0, "y": 0.8, "rate": 0.1, "n": 8, "kind": "p"}
    return Objective("analytic", params, start, 0.9, evaluate)


def trap() -> Objective:
    """Deceptive for one branch: a broad local optimum the first steps fall into, and the
    global one up a second basin whose first step scores below the first.

    Five parameters in [0, 1], all starting at 0.5. The broad basin peaks at 0.8 (a = 0.2,
    the others anywhere near 0.5): moving `a` down from the start gains at once. The second
    basin (a kept near 0.5) climbs with b, then with b and c together, to 1.0 at
    b, c >= 0.95; its first step (b up by 0.2 or more) beats the start but not the first
    basin's versions, so greedy search, whose parent is always the best, reverts it once
    the first basin's climb has begun; search that keeps a version that is not the best
    alive as a parent climbs on from it. The target 0.9 needs b >= 0.95 and c >= 0.8 with
    a near 0.5 (random search: about 0.2% of draws). Scores in steps of 0.02 (plateaus)."""
    names = "abcde"
    params = {n: Param(type="float", min=0, max=1) for n in names}

    def evaluate(v: dict[str, Any]) -> float:
        a, b, c, d, e = (float(v[n]) for n in names)
        off = 0.3 * (e - 0.5) ** 2  # a nuisance parameter: best left alone
        broad = 0.8 - 3 * (a - 0.2) ** 2 - 0.2 * ((b - 0.5) ** 2 + (c - 0.5) ** 2
                                                  + (d - 0.5) ** 2) - off
        tb, tc = (min(max((x - 0.5) / 0.45, 0.0), 1.0) for x in (b, c))
        second = 0.4 + 0.3 * (tb + tb * tc) - 5 * (a - 0.5) ** 2 - off
        return math.floor(max(broad, second, 0.0) * 50) / 50

    return Objective("trap", params, {n: 0.5 for n in names}, 0.9, evaluate, budgets=(50, 100))


OBJECTIVES: dict[str, Callable[[], Objective]] = {
    "classifier": classifier, "deceptive": deceptive, "analytic": analytic, "trap": trap}


# ------------------------------------------------------------------ report


def _job(args: tuple[str, str, int, int]) -> tuple[str, str, int, list[float], float]:
    objective_name, strategy_name, budget, seed = args
    objective = OBJECTIVES[objective_name]()
    started = time.perf_counter()
    trace = STRATEGIES[strategy_name](objective, budget, seed)
    return objective_name, strategy_name, seed, trace, time.perf_counter() - started


def _summary(traces: list[list[float]], budget: int, target: float) -> tuple[float, float, float]:
    bests = [t[budget - 1] for t in traces]
    hits = [next((i + 1 for i, s in enumerate(t[:budget]) if s >= target - 1e-9), budget + 1)
            for t in traces]
    return (statistics.median(bests), sum(h <= budget for h in hits) / len(hits),
            statistics.median(hits))


def _ratio(value: float, base: float) -> str:
    if base == 0:
        return "  –  " if value == 0 else "  ∞  "
    return f"{value / base:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), action="append")
    parser.add_argument("--strategy", choices=sorted(STRATEGIES), action="append")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="a line per finished job")
    parser.add_argument("--baseline", choices=sorted(STRATEGIES), default=BASELINE,
                        help="the first strategy the ratios are to (greedy: the loop's search)")
    parser.add_argument("--baseline-only", action="store_true",
                        help="ratios to --baseline alone: random search and TPE are not run "
                             "(the demo classifier trains for real: minutes a strategy)")
    args = parser.parse_args()
    objectives = args.objective or list(OBJECTIVES)
    strategies = args.strategy or list(STRATEGIES)
    baseline = args.baseline
    try:
        import optuna  # noqa: F401
    except ImportError:
        if "tpe" in strategies:
            strategies.remove("tpe")
            print("note: optuna is not installed, TPE skipped (pip install -e \".[bench]\")")
    wanted = [baseline] if args.baseline_only else [baseline, *BASELINES]
    for base in dict.fromkeys(wanted):
        if base not in strategies and (base != "tpe" or "optuna" in sys.modules):
            strategies.insert(0, base) if base == baseline else strategies.append(base)
    bases = [b for b in dict.fromkeys(wanted) if b in strategies]
    made = {o: OBJECTIVES[o]() for o in objectives}
    jobs = [(o, s, max(made[o].budgets), seed) for o in objectives for s in strategies
            for seed in range(args.seeds)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        results = []
        for done in pool.imap_unordered(_job, jobs, chunksize=1):
            results.append(done)
            if args.verbose:  # (a slow objective: what each finished job reached)
                first = done[3].index(done[3][-1]) + 1
                print(f"  {done[0]} {done[1]} seed {done[2]}: best {done[3][-1]:.3f}, first "
                      f"at evaluation {first} ({done[4]:.0f} s)", flush=True)
    traces: dict[tuple[str, str], list[list[float]]] = {}
    seconds: dict[tuple[str, str], float] = {}
    for objective_name, strategy_name, _, trace, took in results:
        traces.setdefault((objective_name, strategy_name), []).append(trace)
        seconds[(objective_name, strategy_name)] = seconds.get(
            (objective_name, strategy_name), 0.0) + took
    print(f"{args.seeds} seeds; ratios (×) are to {', '.join(bases)} in this run; "
          f"evals to target: median, a seed that missed counts as budget + 1")
    names = "/".join(b[0] for b in bases)
    for objective_name in objectives:
        target = made[objective_name].target
        for b in made[objective_name].budgets:
            print(f"\n{objective_name} @ {b} evaluations (target {target:g})")
            print(f"  {'strategy':<16} {'best':>6} {'× ' + names:>18}   {'hit':>5} "
                  f"{'× ' + names:>18}   {'to target':>9} {'× ' + names:>18}")
            base = [_summary(traces[(objective_name, s)], b, target) for s in bases]
            for s in strategies:
                got = _summary(traces[(objective_name, s)], b, target)
                cols = ["".join(_ratio(got[i], ref[i]) + " " for ref in base).rstrip()
                        for i in range(3)]
                print(f"  {s:<16} {got[0]:6.3f} {cols[0]:>18}   {got[1]:5.0%} {cols[1]:>18}"
                      f"   {got[2]:9.1f} {cols[2]:>18}")
            if "params" in strategies:
                per_seed = [round(t[b - 1], 3) for t in traces[(objective_name, "params")]]
                print(f"  params, best per seed: {per_seed}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
