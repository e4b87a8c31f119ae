"""Frontier search where it matters: on a deceptive landscape it climbs out of the trap that
holds greedy search (bench/search.py's `trap`, driven as the bench drives it: the params
mutator proposing from the parent the strategy picks, a candidate kept when it beats its
parent); its softmax hands the draws from a member whose children keep failing to the
others, and counts them again on resume; pruning keeps branches apart."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

from engine.host import Host
from engine.model import Evaluation
from engine.search import Frontier
from engine.spec import Search, load_spec
from engine.tree import Node, prune, replay_frontier
from engine.versions import Version, Versions
from engine.workspace import Workspace
from tests.test_loop import make_repo
from tests.test_search import frontier_spec, run_once, versions_with

BENCH = Path(__file__).resolve().parent.parent / "bench" / "search.py"


def bench():
    """bench/search.py as a module (it is a script, not a package)."""
    if "bench_search" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_search", BENCH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_search"] = module
        spec.loader.exec_module(module)
    return sys.modules["bench_search"]


def climb(strategy: str, budget: int, seed: int) -> list[float]:
    """The best score after each evaluation on the trap, the search at its defaults."""
    b = bench()
    return asyncio.run(b._drive(b.trap(), budget, seed, Search(strategy=strategy, seed=seed)))


def test_frontier_search_climbs_out_of_the_trap_that_holds_greedy_search():
    # Seed 9: greedy search falls into the broad basin (0.78) and stays there for 100
    # evaluations; frontier search keeps the second basin's first step (which scored below
    # the best) as a parent and reaches the target within 40. (The other seeds: the same
    # story at 61-76 evaluations, should the mutator's random stream change.)
    target = bench().trap().target
    for seed in (9, 5, 4, 11):
        if climb("frontier", 80, seed)[-1] >= target and max(climb("greedy", 100, seed)) < target:
            break
    else:
        raise AssertionError("greedy search as good as frontier search on every seed")
    assert seed != 9 or climb("frontier", 40, 9)[-1] >= target


def test_the_trap_is_deceptive_its_first_steps_fall_into_the_broad_basin():
    trap = bench().trap()
    start = dict(trap.start)
    broad = {**start, "a": 0.35}             # one step down `a`: the broad basin
    second = {**start, "b": 0.75}            # one step up `b`: the second basin
    assert trap.evaluate(broad) > trap.evaluate(second) > trap.evaluate(start)
    # From the broad basin's peak no step of the second basin's climb beats it...
    peak = trap.evaluate({**start, "a": 0.2})
    assert trap.evaluate({**start, "a": 0.2, "b": 1.0, "c": 1.0}) < peak
    # ...while from the second basin's first step, b then c lead to the top.
    assert trap.evaluate({**start, "b": 1.0}) < peak < trap.evaluate({**start, "b": 1.0,
                                                                      "c": 0.9})
    assert trap.evaluate({**start, "b": 1.0, "c": 1.0}) == 1.0


def test_softmax_hands_the_draws_of_a_member_whose_children_keep_failing_to_the_others():
    versions = versions_with([0.1, 0.9, 0.5])
    search = Frontier(versions, Search(strategy="frontier", pick="softmax", seed=3))
    fresh = search.weights(search.ranked())
    assert fresh[0] == 1.0 and fresh[0] > fresh[1] > fresh[2] > 0  # the best leads
    search.tries = {2: 8}                  # the best has had 8 children (patience 2)
    tired = search.weights(search.ranked())
    assert tired[0] == 0.5 ** 4 and tired[1] == fresh[1]
    drawn = [v.exp_id for v in search.parents(60)]
    assert drawn.count(3) > drawn.count(2)  # the runner-up has the draws now
    assert sum(search.tries.values()) == 8 + 60
    # An unscored member is never drawn; a frontier of only unscored ones draws evenly.
    versions.admit(Version(7, {}, [], 3, None))
    assert search.weights(search.ranked())[-1] == 0.0


def test_a_resumed_frontier_run_counts_each_version_s_children_again(tmp_path,
                                                                    params_workspace):
    make_repo(params_workspace)
    spec = frontier_spec(params_workspace, "{strategy: frontier, width: 3, seed: 2}",
                         rounds=10)
    store, run_id = asyncio.run(run_once(tmp_path / "a.db", spec))
    children: dict[int, int] = {}
    for row in store.experiments(run_id):
        if row["kind"] == "candidate":
            children[row["parent"]] = children.get(row["parent"], 0) + 1
    loop = Host(store).add(load_spec(spec))
    loop.resume()
    assert loop.search.tries == children and sum(children.values()) >= 10
    asyncio.run(loop.pool.close())


def test_pruning_drops_a_sibling_of_a_better_version_before_another_branch_s_head():
    # 1 the start; 2 a slow branch's head (0.45); 3 → 4 a fast branch, whose two children
    # 5 (0.7, the best) and 6 (0.66) both beat it. Width 3: 4 goes first (superseded),
    # then 6, a sibling of the best, though it scores above the slow branch's head.
    lineage = {1: None, 2: 1, 3: 1, 4: 3, 5: 4, 6: 4}
    members = {i: Node(i, lineage[i], s) for i, s in [(2, 0.45), (4, 0.65), (5, 0.7),
                                                       (6, 0.66)]}
    pruned = prune(members, 3, members[5], set(), "maximize", lineage)
    assert [v.exp_id for v in pruned] == [4]
    pruned = prune(members, 2, members[5], set(), "maximize", lineage)
    assert [v.exp_id for v in pruned] == [6] and set(members) == {2, 5}
    # Of equal scores the older is the one crowded (a plateau's walk goes on).
    ties = {i: Node(i, 1, 0.5) for i in (2, 3, 4)}
    pruned = prune(ties, 2, ties[4], set(), "maximize", {1: None, 2: 1, 3: 1, 4: 1})
    assert [v.exp_id for v in pruned] == [2]
    # A parent loop in the lineage does not hang it.
    loop = {i: Node(i, i + 1, 0.1 * i) for i in (1, 2, 3)}
    assert len(prune(loop, 1, loop[3], set(), "maximize", {1: 2, 2: 3, 3: 1})) == 2


def test_the_engine_and_the_app_s_replay_prune_alike():
    workspace = Workspace(Path("."), ["a"], [], [], "t")
    versions = Versions(None, workspace, "mean", "maximize", width=3)  # type: ignore[arg-type]
    rows = []
    plan = [(1, None, 0.4), (2, 1, 0.45), (3, 1, 0.55), (4, 3, 0.65), (5, 4, 0.7),
            (6, 4, 0.66), (7, 2, 0.5), (8, 6, 0.68)]
    for exp_id, parent, score in plan:
        version = Version(exp_id, {}, [Evaluation("ok", score=score)], parent, score)
        best = versions.best
        if best is None or score > best.score:
            versions.set_best(version)
        else:
            versions.admit(version)
        rows.append({"id": exp_id, "parent": parent, "score": score, "kind": "candidate",
                     "verdict": "kept"})
    assert replay_frontier(rows, 3, "maximize", versions.best_id) == set(versions.frontier)
