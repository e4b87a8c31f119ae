"""Search beyond one branch (engine/search.py): beam and frontier search keep several
versions alive as parents, every version keeps its parent (a tree), each frontier member is a
git ref, and veto and pin work on any node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.host import Host
from engine.model import ADVANCING, Evaluation
from engine.search import Beam, Frontier
from engine.spec import Search, SpecError, load_spec, parse_spec
from engine.store import Store
from engine.versions import Version, Versions
from engine.workspace import Workspace
from tests.conftest import metric_spec
from tests.test_loop import git, make_repo


def frontier_spec(ws: Path, search: str, rounds: int = 24) -> Path:
    return metric_spec(ws, stop=f"max_rounds: {rounds}, max_failures: null",
                       extra=f"search: {search}\n")


def refs(ws: Path, run: str = "toy") -> dict[int, str]:
    out = git(ws, "for-each-ref", "--format=%(refname) %(objectname)", f"refs/autoresearch/{run}")
    return {int(name.rsplit("/v", 1)[1]): sha for name, sha in
            (line.split() for line in out.splitlines())}


async def run_once(db: Path, spec: Path) -> tuple[Store, int]:
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    return store, loop.run_id


async def test_frontier_search_grows_a_tree_and_keeps_each_member_as_a_git_ref(
        tmp_path, params_workspace):
    make_repo(params_workspace)
    spec = frontier_spec(params_workspace, "{strategy: frontier, width: 3, pick: epsilon, "
                                           "epsilon: 0.5, seed: 1}")
    store, run_id = await run_once(tmp_path / "a.db", spec)
    rows = store.experiments(run_id)
    run = store.get_run(run_id)
    kept = [r for r in rows if r["verdict"] in ADVANCING]
    # A tree: some candidates were proposed from a version that was not the best then.
    best_then, off_best = None, 0
    for r in rows:
        if r["kind"] == "candidate" and r["parent"] != best_then:
            off_best += 1
        if r["id"] == run["best_experiment"] or (r["verdict"] in ADVANCING
                                                  and r["kind"] == "baseline"):
            best_then = r["id"]
    assert off_best > 0
    assert all(r["parent"] is not None for r in rows if r["kind"] == "candidate")
    # The run's best is the best-scoring kept version (loss: lower is better).
    assert run["best_score"] == min(r["score"] for r in kept)
    # The branch holds the best; each frontier member (at most `width`) is a ref whose
    # files are that version's; pruned members have none.
    members = refs(params_workspace)
    assert run["best_experiment"] in members and 1 <= len(members) <= 3
    for exp_id in members:
        shown = git(params_workspace, "show", f"refs/autoresearch/toy/v{exp_id}:params.yaml")
        assert shown == store.version_files(exp_id)["params.yaml"]
    assert (params_workspace / "params.yaml").read_text() == \
        store.version_files(run["best_experiment"])["params.yaml"]
    assert git(params_workspace, "rev-parse", "--abbrev-ref", "HEAD").strip() == "autoresearch/toy"


async def test_a_resumed_frontier_run_picks_up_the_same_frontier(tmp_path, params_workspace):
    make_repo(params_workspace)
    spec = frontier_spec(params_workspace, "{strategy: beam, width: 3}", rounds=12)
    store, run_id = await run_once(tmp_path / "a.db", spec)
    before = set(refs(params_workspace))
    host = Host(store)
    loop = host.add(load_spec(spec))
    loop.resume()
    assert set(v.exp_id for v in loop.versions.members()) == before
    await loop.pool.close()


async def test_veto_of_a_frontier_member_beside_the_best_removes_it_and_its_ref(
        tmp_path, params_workspace):
    make_repo(params_workspace)
    spec = frontier_spec(params_workspace, "{strategy: beam, width: 4}", rounds=16)
    store, run_id = await run_once(tmp_path / "a.db", spec)
    run = store.get_run(run_id)
    beside = [e for e in refs(params_workspace) if e != run["best_experiment"]
              and store.experiment(e)["verdict"] == "kept"]
    if not beside:
        pytest.skip("no member beside the best on this seed")
    spec.write_text(spec.read_text().replace("max_rounds: 16", "max_rounds: 400"))
    host = Host(store)
    loop = host.add(load_spec(spec))
    loop.paused = True
    task = asyncio.create_task(host.run_until_done())
    veto = await store.send_command(run_id, "veto", target=beside[0])
    for _ in range(200):
        if store.command(veto)["applied"]:
            break
        await asyncio.sleep(0.05)
    assert "out of the frontier" in store.command(veto)["result"]
    assert beside[0] not in refs(params_workspace)
    assert store.get_run(run_id)["best_experiment"] == run["best_experiment"]
    await store.send_command(run_id, "stop")
    await asyncio.wait_for(task, 20)


def test_search_settings_are_checked():
    base = ("name: s\ntarget: {files: [a]}\nmutator: {kind: params, file: a, params: "
            "{x: {type: int, min: 0, max: 3}}}\nevaluate: {kind: metric, command: c, "
            "metric: m}\n")
    assert parse_spec(base).search.strategy == "greedy"
    with pytest.raises(SpecError, match="search"):
        parse_spec(base + "search: {strategy: sideways}\n")
    with pytest.raises(SpecError, match="width"):
        parse_spec(base + "search: {strategy: beam, width: 0}\n")


def versions_with(scores: list[float], direction: str = "maximize") -> Versions:
    workspace = Workspace(Path("."), ["a"], [], [], "t")
    versions = Versions(None, workspace, "mean", direction, width=len(scores))  # type: ignore[arg-type]
    for n, score in enumerate(scores, 1):
        version = Version(n, {}, [Evaluation("ok", score=score)], None, score)
        if n == 1 or score > max(s for s in scores[: n - 1]):
            versions.set_best(version)
        else:
            versions.admit(version)
    return versions


def test_beam_takes_the_best_versions_in_turn():
    versions = versions_with([0.1, 0.5, 0.3])
    beam = Beam(versions, Search(strategy="beam", width=3))
    assert [v.exp_id for v in beam.parents(4)] == [2, 3, 1, 2]
    assert [v.exp_id for v in beam.parents(2)] == [3, 1]


def test_frontier_picks_follow_their_policy():
    versions = versions_with([0.1, 0.9, 0.5])
    best = Frontier(versions, Search(strategy="frontier", pick="best"))
    assert {v.exp_id for v in best.parents(20)} == {2}
    soft = Frontier(versions, Search(strategy="frontier", pick="softmax", temperature=0.25,
                                     seed=4))
    drawn = [v.exp_id for v in soft.parents(400)]
    assert drawn.count(2) > drawn.count(3) > drawn.count(1) > 0
    eps = Frontier(versions, Search(strategy="frontier", pick="epsilon", epsilon=0.3, seed=2))
    share = [v.exp_id for v in eps.parents(1000)].count(2) / 1000
    assert 0.7 < share < 0.9  # 0.7 + 0.3 / 3


def test_the_frontier_keeps_the_best_and_pinned_when_it_prunes():
    versions = versions_with([0.5, 0.9, 0.1, 0.2])
    versions.width = 2
    versions.pinned.add(3)
    pruned = versions.admit(Version(9, {}, [], None, 0.3))
    assert {v.exp_id for v in versions.members()} == {2, 3}
    assert {v.exp_id for v in pruned} == {1, 4, 9}


def test_the_prompt_names_the_parent_it_edits_and_what_its_siblings_tried():
    from engine.model import Proposal
    from engine.mutators.prompt import build_prompt

    spec = parse_spec("name: s\ntarget: {files: [a.md]}\nmutator: {kind: llm}\nevaluate: "
                      "{kind: metric, command: c, metric: m}\nsearch: {strategy: frontier}\n")
    proposal = Proposal("s", {"a.md": "hello\n"}, [], [], [], 0.4, parent=5,
                        parent_is_best=False,
                        siblings=[{"id": 7, "verdict": "reverted", "description": "say hi",
                                   "score": 0.3}])
    prompt = build_prompt(spec, proposal)
    assert "as in version #5, the version this change builds on" in prompt.artifact
    assert "Changes already tried on version #5" in prompt.turn
    assert "- #7 reverted: say hi (score 0.3)" in prompt.turn
    plain = build_prompt(spec, Proposal("s", {"a.md": "hello\n"}, [], [], [], 0.4, parent=5))
    assert "best version so far" in plain.artifact and "already tried" not in plain.turn


def test_pruning_drops_a_branch_s_stepping_stones_before_another_branch_s_head():
    workspace = Workspace(Path("."), ["a"], [], [], "t")
    versions = Versions(None, workspace, "mean", "maximize", width=3)  # type: ignore[arg-type]

    def version(exp_id: int, parent: int | None, score: float) -> Version:
        return Version(exp_id, {}, [Evaluation("ok", score=score)], parent, score)

    versions.set_best(version(1, None, 0.4))        # the start
    versions.admit(version(2, 1, 0.45))             # a slow branch: its head
    versions.set_best(version(3, 1, 0.55))          # a fast branch climbs...
    pruned = versions.set_best(version(4, 3, 0.65))
    assert [v.exp_id for v in pruned] == [1]        # the start: superseded by its children
    pruned = versions.set_best(version(5, 4, 0.7))
    assert [v.exp_id for v in pruned] == [3]        # a stepping stone, not the slow head
    assert {v.exp_id for v in versions.members()} == {2, 4, 5}
