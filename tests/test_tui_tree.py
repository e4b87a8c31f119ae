"""The version tree in the app (`t`, tui/tree_screen.py) on a frontier run the engine really
recorded: every experiment under its parent, the frontier and the best marked as the engine
keeps them, enter opens a node, v and i steer it, it follows the run, and the changelog says
which parent each candidate came from."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from engine.store import Store
from engine.tree import VersionTree, replay_frontier, search_width
from tests.conftest import metric_spec, write
from tests.test_loop import make_repo
from tests.test_search import refs, run_once
from tui.app import make_app
from tui.changelog_pane import Changelog
from tui.dialogs import ConfirmScreen
from tui.experiment_screen import ExperimentScreen
from tui.fixtures import build_store, build_tree_store, wait_until
from tui.tree_screen import TreeScreen

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[int]]:
    """A small frontier run, once per module: its store, and the frontier members' git refs."""
    root = tmp_path_factory.mktemp("frontier")
    ws = root / "ws"
    write(ws / "params.yaml", "x: 1\ny: a\n")
    write(ws / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)
    make_repo(ws)
    spec = metric_spec(ws, stop="max_rounds: 14, max_failures: null",
                       extra="search: {strategy: frontier, width: 3, pick: epsilon, "
                             "epsilon: 0.5, seed: 1}\n")
    store, _ = asyncio.run(run_once(root / "a.db", spec))
    store.close()
    return root / "a.db", set(refs(ws))


@pytest.fixture
def db(recorded: tuple[Path, set[int]], tmp_path: Path) -> Path:
    copy = tmp_path / "a.db"
    shutil.copy(recorded[0], copy)
    return copy


async def open_tree(app: Any, pilot: Any) -> TreeScreen:
    """Once the app shows the run: `t`, and the tree screen it opens."""
    await wait_until(pilot, lambda: app.selected_run is not None, 10, "the run")
    await pilot.press("t")
    return await wait_until(pilot, lambda: isinstance(app.screen, TreeScreen) and app.screen,
                            10, "the tree")


def model_of(db: Path) -> VersionTree:
    store = Store(db)
    run = store.runs()[0]
    tree = VersionTree.build(store.tree_rows(run["id"]), 3, run["direction"],
                             run["best_experiment"])
    store.close()
    return tree


def test_the_frontier_the_app_shows_is_the_one_the_engine_keeps(recorded) -> None:
    db, members = recorded
    store = Store(db)
    run = store.runs()[0]
    frontier = replay_frontier(store.tree_rows(run["id"]), 3, "minimize", run["best_experiment"])
    assert frontier == members and len(members) > 1
    # Greedy search: the frontier is the best alone; no best yet: nothing.
    assert replay_frontier(store.tree_rows(run["id"]), 1, "minimize", 5) == {5}
    assert replay_frontier([], 3, "minimize", None) == set()


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "160x48"])
async def test_t_shows_every_experiment_under_its_parent_with_the_frontier_and_best_marked(
        db: Path, size: tuple[int, int]) -> None:
    model = model_of(db)
    app = make_app(db, [], attach=True)
    async with app.run_test(size=size) as pilot:
        screen = await open_tree(app, pilot)
        await pilot.pause()
        # The way down to each frontier member is open; every node sits under its parent.
        for member in model.frontier:
            for step in model.path_to(member):
                assert step in screen.nodes and screen.nodes[step].line >= 0
        for exp_id, node in screen.nodes.items():
            assert node.parent.data == model.parent_of(exp_id)
            assert str(node.label).startswith(f"#{exp_id} ")
        best = model.best_id
        assert " BEST" in str(screen.nodes[best].label)
        for member in model.frontier - {best}:
            assert " frontier" in str(screen.nodes[member].label)
        # The cursor starts on the best; the detail names its parent.
        assert screen.selected_id() == best
        detail = str(screen.query_one("#tree-detail").render())
        assert f"from #{model.parent_of(best)}" in detail and "the run's best" in detail
        # Nothing drawn outside the screen, whatever the size; a resize keeps it whole.
        other = SIZES[1] if size == SIZES[0] else SIZES[0]
        for width, height in (other, size):
            await pilot.resize_terminal(width, height)
            await pilot.pause()
            tree = screen.query_one("#version-tree")
            assert tree.region.width == width and tree.region.height > 5
            assert screen.query_one("#tree-detail").region.bottom <= height - 1
            assert screen.selected_id() == best
        await pilot.press("escape")
        assert app.screen is app.dash


async def test_space_collapses_and_expands_a_version_and_its_children_appear_once(
        db: Path) -> None:
    model = model_of(db)
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tree(app, pilot)
        root = model.children[None][0]  # the baseline: open (the frontier grew from it)
        screen.go_to(root)
        await pilot.pause()
        tree = screen.tree
        lines = tree.last_line
        await pilot.press("space")
        await pilot.pause()
        assert not screen.nodes[root].is_expanded and tree.last_line == 0
        await pilot.press("space")
        await pilot.pause()
        assert screen.nodes[root].is_expanded and tree.last_line == lines
        # A collapsed version's children are added when it is first opened, once.
        closed = next(i for i in model.children if i is not None and i not in screen.populated
                      and i in screen.nodes)
        screen.go_to(closed)
        await pilot.pause()
        await pilot.press("space")
        await pilot.pause()
        kids = [n.data for n in screen.nodes[closed].children]
        assert kids == model.children[closed]
        await pilot.press("space", "space")
        await pilot.pause()
        assert [n.data for n in screen.nodes[closed].children] == kids


async def test_enter_opens_the_node_and_v_and_i_steer_it(db: Path) -> None:
    model = model_of(db)
    store = Store(db)
    run_id = store.runs()[0]["id"]
    store.update_run(run_id, status="running")  # steering keys need a live run
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_tree(app, pilot)
        await pilot.pause()
        reverted = next(i for i, r in model.rows.items() if r["verdict"] == "reverted")
        screen.go_to(reverted)
        await pilot.pause()
        assert screen.selected_id() == reverted
        await pilot.press("enter")
        assert isinstance(app.screen, ExperimentScreen) and app.screen.exp_id == reverted
        await pilot.press("escape")
        assert app.screen is screen
        await pilot.press("i")
        await wait_until(pilot, lambda: any(c["verb"] == "pin" for c in store.commands(run_id)),
                         5, "the pin command")
        # A kept node beside the best: v asks first (what was built on it goes too).
        kept = next(i for i in model.frontier if i != model.best_id)
        screen.go_to(kept)
        await pilot.pause()
        await pilot.press("v")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: any(c["verb"] == "veto" for c in store.commands(run_id)),
                         5, "the veto command")
        sent = {c["verb"]: c["target"] for c in store.commands(run_id)}
        assert sent == {"pin": reverted, "veto": kept}
        # The baseline cannot be vetoed: the key is off.
        screen.go_to(model.children[None][0])
        await pilot.pause()
        assert screen.check_action("steer", ("veto",)) is None
        # The app moved to another run underneath (`]`): this tree's nodes are not its.
        screen.go_to(reverted)
        await pilot.pause()
        other = build_store(db, runs=1, experiments=5).runs()
        await wait_until(pilot, lambda: len(app.board.runs) == 2, 10, "the second run")
        app.select_run(next(r["id"] for r in other if r["id"] != run_id))
        assert screen.check_action("steer", ("pin",)) is None
        before = len(store.commands(None))
        await pilot.press("i")
        await pilot.pause()
        assert len(store.commands(None)) == before
    store.close()


async def test_the_tree_follows_new_experiments_and_verdicts_rewritten_in_place(
        db: Path) -> None:
    model = model_of(db)
    store = Store(db)
    run = store.runs()[0]
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tree(app, pilot)
        best = model.best_id
        screen.go_to(best)
        await pilot.pause()
        screen.nodes[best].expand()
        await pilot.pause()
        now = time.time()
        new_id = store.max_experiment_id() + 1
        store.bulk_add_experiments([{
            "id": new_id, "run_id": run["id"], "round": 99, "parent": best,
            "kind": "candidate", "verdict": "kept", "score": -1.0, "delta": -1.0,
            "description": "x 7 → 8 (a new best)", "started": now, "finished": now}])
        store.update_run(run["id"], best_experiment=new_id, best_score=-1.0)
        node = await wait_until(pilot, lambda: screen.nodes.get(new_id), 10, "the new node")
        assert node.parent is screen.nodes[best]
        await wait_until(pilot, lambda: " BEST" in str(node.label), 10, "the new best marked")
        assert " BEST" not in str(screen.nodes[best].label)
        # A verdict rewritten in place (a veto reverting a chain) relabels its node.
        reverted = next(i for i in model.frontier if i not in (best, new_id))
        store.conn.execute("UPDATE experiments SET verdict = 'vetoed', finished = ? WHERE id = ?",
                           [time.time(), reverted])
        store.conn.commit()
        await wait_until(pilot, lambda: "vetoed" in str(screen.nodes[reverted].label), 10,
                         "the veto drawn")
        assert reverted not in screen.tree_model.frontier
        # A row in flight, then its verdict landing (no rewrite: the row was running).
        screen.nodes[new_id].expand()
        flying = new_id + 1
        store.bulk_add_experiments([{
            "id": flying, "run_id": run["id"], "round": 100, "parent": new_id,
            "kind": "candidate", "verdict": "running", "description": "x 8 → 9",
            "started": time.time()}])
        node = await wait_until(pilot, lambda: screen.nodes.get(flying), 10, "the row in flight")
        assert "running" in str(node.label)
        store.conn.execute("UPDATE experiments SET verdict = 'reverted', score = 2.0, "
                           "finished = ? WHERE id = ?", [time.time(), flying])
        store.conn.commit()
        await wait_until(pilot, lambda: "reverted" in str(screen.nodes[flying].label), 10,
                         "the verdict landed")
    store.close()


async def test_the_changelog_names_each_candidate_s_parent_in_tree_runs_only(
        db: Path, tmp_path: Path) -> None:
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 10, "the run")
        table = app.dash.query_one(Changelog).table
        await wait_until(pilot, lambda: table.row_count, 10, "the changelog")
        store = Store(db)
        parents = {str(r["id"]): r["parent"] for r in store.tree_rows(app.selected_run)}
        store.close()
        assert "parent" in [c.key for c in table.columns]
        for key in list(table.rows)[:5]:
            assert table.get_cell(key, "parent").plain == f"#{parents[key]}"
    greedy = tmp_path / "greedy.db"
    build_store(greedy).close()
    app = make_app(greedy, [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 10, "the run")
        assert "parent" not in [c.key for c in app.dash.query_one(Changelog).table.columns]


async def test_a_tree_of_500_versions_opens_with_only_the_open_paths_drawn(
        tmp_path: Path) -> None:
    build_tree_store(tmp_path / "big.db", versions=500, tried=4)[0].close()
    app = make_app(tmp_path / "big.db", [], attach=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 10, "the run")
        started = time.perf_counter()
        await pilot.press("t")
        screen = await wait_until(pilot, lambda: isinstance(app.screen, TreeScreen)
                                  and app.screen, 10, "the tree")
        await pilot.pause()
        opened = time.perf_counter() - started
        model = screen.tree_model
        assert len(model.rows) == 500 * 5 - 4 and len(model.frontier) == 4
        assert len(screen.nodes) < len(model.rows) / 2  # collapsed versions: children later
        assert screen.selected_id() == model.best_id
        assert opened < 10  # (bench/tree.py prints it against the experiment screen)


def test_odd_rows_still_make_a_tree_and_an_odd_spec_a_width() -> None:
    row = {"kind": "candidate", "verdict": "kept", "score": 1.0, "round": 1, "delta": None,
           "description": "", "reason": None}
    rows = [{**row, "id": 1, "parent": 2}, {**row, "id": 2, "parent": 1},  # a loop
            {**row, "id": 3, "parent": 99}]  # a parent not in the run
    tree = VersionTree.build(rows, 3, "maximize", 3)
    assert tree.children[None] == [3] and tree.path_to(1) == [2, 1]
    assert tree.frontier == {1, 2, 3}
    assert search_width({}) == 1 and search_width({"search": {"strategy": "greedy"}}) == 1
    assert search_width({"search": {"strategy": "beam", "width": "wide"}}) == 1
    assert search_width({"search": {"strategy": "frontier"}}) == 4
