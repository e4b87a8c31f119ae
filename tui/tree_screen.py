"""The version tree of the selected run (`t`): every experiment under the version it was
proposed from, with its score and verdict; the frontier and the best marked; the path to
each frontier member open, the rest collapsed.

Enter opens the selected experiment (as the changelog does), space expands or collapses,
`b` goes to the best, `f` to the next frontier member; `v` and `i` veto and pin the
selected node through the same actions as everywhere (engine/actions.py).

The tree follows the run live without reading the whole run again: the app's poll keeps
`Board.detail.points` current; each refresh here compares the rows in flight with it (every
row, when the board counted a rewrite: a veto, a pin), reads only new rows from the store,
and relabels only the nodes that changed. A node's children are drawn when it first opens.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from engine.model import BASELINE, RUNNING
from engine.tree import VersionTree, replay_frontier, search_width
from tui.changelog_pane import VERDICT_STYLES
from tui.footer import LeanFooter
from tui.heading import Heading
from tui.safe import line
from tui.summary import fmt_delta, fmt_score

#: How often the tree catches up with the run (the app's poll reads the store).
REFRESH_S = 0.5
Node = TreeNode[int]


def _count(n: int, word: str) -> str:
    """`1 version`, `3 versions`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class TreeScreen(Screen[None]):
    """Full screen over the dashboard; Escape (or `t`) goes back."""

    DEFAULT_CSS = """
    TreeScreen Tree { height: 1fr; }
    TreeScreen #tree-detail {
        height: 4; padding: 0 1; border-top: solid $primary 50%;
        text-wrap: nowrap; text-overflow: ellipsis;  /* three lines: cut, never wrapped */
    }
    """
    BINDINGS = [
        Binding("escape,q,t", "app.pop_screen", "Back"),
        Binding("v", "steer('veto')", "Veto"),
        Binding("i", "steer('pin')", "Pin"),
        Binding("b", "best", "Best"),
        Binding("f", "next_frontier", "Frontier"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        #: The nodes drawn so far, and the ids whose children were added (None: the roots).
        self.nodes: dict[int, Node] = {}
        self.populated: set[int | None] = set()
        self.tree_model: VersionTree | None = None
        self.width = 1
        self.direction = "maximize"
        #: The frontier whose paths were opened (a new member's path opens once).
        self._drawn_frontier: set[int] = set()
        self._keys_state: tuple[Any, ...] = ()
        #: The rows in flight (the only ones that change unannounced), and the board's
        #: count of rewrites seen.
        self._in_flight: set[int] = set()
        self._rewrites = 0

    def compose(self) -> ComposeResult:
        yield Heading(id="tree-head")
        tree: Tree[int] = Tree("versions", id="version-tree")
        tree.show_root = False
        tree.auto_expand = False  # enter opens the experiment; space expands
        tree.guide_depth = 2
        yield tree
        yield Static(id="tree-detail")
        yield LeanFooter(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        app: Any = self.app
        run = app.board.runs[self.run_id]
        self.direction = run["direction"]
        self.width = search_width(app.board.specs.get(self.run_id, {}))
        self.load()
        self.set_interval(REFRESH_S, self.refresh_tree)
        self.query_one(Tree).focus()

    # ------------------------------------------------------------ building

    @property
    def tree(self) -> Tree[int]:
        return self.query_one("#version-tree", Tree)

    def _best_id(self) -> int | None:
        app: Any = self.app
        return app.board.runs[self.run_id]["best_experiment"]

    def load(self) -> None:
        """Read the run's tree from the store and draw the way down to each frontier member
        (on opening). A node's children are added when it is first expanded: a run of
        thousands of experiments draws only what is open."""
        app: Any = self.app
        rows = app.board.store.tree_rows(self.run_id)
        model = VersionTree.build(rows, self.width, self.direction, self._best_id())
        self.tree_model = model
        self.tree.clear()
        self.nodes = {}
        self.populated = set()
        self._populate(None)
        self._open_paths(model.frontier)
        self._drawn_frontier = set(model.frontier)
        self._in_flight = {r["id"] for r in rows if r["verdict"] == RUNNING}
        self._rewrites = app.board.detail.rewrites if app.board.detail else 0
        self._head()
        self.action_best()

    def _populate(self, exp_id: int | None) -> None:
        """Add the children of `exp_id` (None: the roots), once."""
        model = self.tree_model
        assert model is not None
        if exp_id in self.populated:
            return
        under = self.tree.root if exp_id is None else self.nodes[exp_id]
        self.populated.add(exp_id)
        for child in model.children.get(exp_id, []):
            self._add(under, child)

    def _add(self, under: Node, exp_id: int) -> Node:
        model = self.tree_model
        assert model is not None
        node = under.add(self._label(exp_id), data=exp_id, expand=False,
                         allow_expand=bool(model.children.get(exp_id)))
        self.nodes[exp_id] = node
        return node

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[int]) -> None:
        if event.node.data is not None:
            self._populate(event.node.data)

    def _open_paths(self, ids: set[int]) -> None:
        """Expand the way down to each of `ids` (the frontier: where the search goes on)."""
        model = self.tree_model
        assert model is not None
        for exp_id in ids:
            for step in model.path_to(exp_id)[:-1]:
                node = self.nodes.get(step)
                if node is None:
                    break  # (not reachable from the roots drawn: a parent loop in the store)
                self._populate(step)
                if not node.is_expanded:
                    node.expand()

    def _label(self, exp_id: int) -> Text:
        model = self.tree_model
        assert model is not None
        row = model.rows[exp_id]
        verdict = row["verdict"]
        text = Text(f"#{exp_id} ", style="bold" if exp_id in model.frontier else "")
        text.append(f"{fmt_score(row['score'])} ")
        delta, better = fmt_delta(row["delta"], self.direction)
        if delta and row["kind"] != BASELINE:
            text.append(f"{delta} ", style="green" if better else "red" if better is False
                        else "")
        text.append(verdict, style=VERDICT_STYLES.get(verdict, ""))
        if exp_id == model.best_id:
            text.append(" BEST", style="bold reverse green")
        elif exp_id in model.frontier:
            text.append(" frontier", style="bold reverse")
        tried = len(model.children.get(exp_id, ()))
        if tried:
            text.append(f" ({tried} tried)", style="dim")
        text.append("  ")
        text.append(line(row["description"]))  # a model's words: shown, never obeyed
        return text

    # ------------------------------------------------------------ following the run

    def refresh_tree(self) -> None:
        """Catch up with the run: new experiments, verdicts that landed or were rewritten
        (a veto, a pin), and the frontier and best they moved."""
        if not self.is_attached:  # popped: a timer can still fire once as it goes
            return
        app: Any = self.app
        model = self.tree_model
        detail = app.board.detail
        if model is None or detail is None or detail.run_id != self.run_id:
            return
        # A finished row changes only by a rewrite (a veto, a pin), which the board counts;
        # otherwise only rows in flight can have changed: no scan of every point.
        if detail.rewrites != self._rewrites:
            self._rewrites = detail.rewrites
            ids: Any = detail.points.keys()
        else:
            ids = self._in_flight
        points = detail.points
        changed = {i for i in ids if i in model.rows and i in points and
                   (model.rows[i]["verdict"], model.rows[i]["score"]) != tuple(points[i][1:3])}
        last = max(model.rows, default=0)
        newest = next(reversed(detail.points), 0)  # (points are in id order)
        fresh = app.board.store.tree_rows(self.run_id, last) if newest > last else []
        if changed:  # the score and delta of a rewritten row: read them again
            for row in app.board.store.tree_rows(self.run_id, min(changed) - 1):
                if row["id"] in changed:
                    model.rows[row["id"]] = row
        best = self._best_id()
        if not changed and not fresh and best == model.best_id:
            return
        relabel = set(changed)
        for row in fresh:
            model.rows[row["id"]] = row
            parent = row["parent"] if row["parent"] in model.rows else None
            model.children.setdefault(parent, []).append(row["id"])
            if parent is not None:
                relabel.add(parent)  # its count of children
        self._in_flight = {i for i, r in model.rows.items() if r["verdict"] == RUNNING}
        frontier = replay_frontier(model.rows.values(), self.width, self.direction, best)
        relabel |= frontier ^ model.frontier
        relabel |= {i for i in (best, model.best_id) if i is not None}
        model.frontier, model.best_id = frontier, best
        for row in fresh:
            parent = model.parent_of(row["id"])
            if parent in self.populated:
                self._add(self.tree.root if parent is None else self.nodes[parent], row["id"])
            elif parent in self.nodes:
                self.nodes[parent].allow_expand = True  # its children come when it opens
        for exp_id in relabel:
            node = self.nodes.get(exp_id)
            if node is not None:
                node.set_label(self._label(exp_id))
        self._open_paths(frontier - set(self._drawn_frontier))
        self._drawn_frontier = set(frontier)
        self._head()
        self._detail()

    # ------------------------------------------------------------ the parts around it

    def _head(self) -> None:
        app: Any = self.app
        model = self.tree_model
        assert model is not None
        run = app.board.runs[self.run_id]
        spec = app.board.specs.get(self.run_id, {})
        strategy = (spec.get("search") or {}).get("strategy", "greedy")
        versions = sum(1 for r in model.rows.values() if r["verdict"] in ("baseline", "kept",
                                                                            "pinned"))
        # One line, cut at the end (tui/heading.py): the best first, the search's shape last.
        text = Text(f"{line(run['name'])} ", style="bold")
        text.append(f"· best #{model.best_id} {fmt_score(run['best_score'])} · "
                    f"{_count(len(model.rows), 'experiment')}, {_count(versions, 'version')} · ")
        if self.width > 1:  # (one wide, the frontier is the best: nothing to count)
            text.append(f"frontier {len(model.frontier)} · ")
        text.append(f"{strategy} ×{self.width}")
        self.query_one("#tree-head", Heading).update(text)

    def selected_id(self) -> int | None:
        try:
            node = self.tree.cursor_node
        except NoMatches:  # asked (by the footer) before the tree is composed, or after
            return None
        return node.data if node is not None and node is not self.tree.root else None

    @property
    def exp_id(self) -> int | None:
        """The selected node: the app's keys treat it as the one experiment open."""
        return self.selected_id()

    def _detail(self) -> None:
        model = self.tree_model
        exp_id = self.selected_id()
        box = self.query_one("#tree-detail", Static)
        if model is None or exp_id is None or exp_id not in model.rows:
            box.update(Text("no experiment selected", style="dim"), layout=False)
            return
        row = model.rows[exp_id]
        # One line each, cut with … rather than wrapped: the box has three.
        text = Text(f"#{exp_id} ", style="bold", no_wrap=True, overflow="ellipsis")
        if row["kind"] not in ("candidate", BASELINE):
            text.append(f"{row['kind']} · ")
        text.append(row["verdict"], style=VERDICT_STYLES.get(row["verdict"], ""))
        text.append(f" · round {row['round']} · score {fmt_score(row['score'])}")
        parent = model.parent_of(exp_id)
        text.append(f" · from #{parent}" if parent is not None else " · a root")
        if exp_id == model.best_id:
            text.append(" · the run's best", style="bold green")
        elif exp_id in model.frontier:
            text.append(" · in the frontier", style="bold")
        kids = model.children.get(exp_id, [])
        if kids:
            kept = sum(1 for k in kids if model.rows[k]["verdict"] in ("kept", "pinned"))
            text.append(f" · {len(kids)} tried from it, {kept} kept")
        text.append("\n")
        text.append(line(row["description"]), style="bold")
        if row.get("reason"):  # the verdict's why (a rule's words, or a worker's error)
            text.append(f"\nwhy: {line(row['reason'])}", style="italic")
        else:
            text.append("\nenter open · space expand/collapse", style="dim")
        box.update(text, layout=False)  # a fixed height: no layout for each cursor move

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[int]) -> None:
        self._detail()
        # The footer again only when what enables v and i changed (it rebuilds its keys).
        state = (self.check_action("steer", ("veto",)), self.check_action("steer", ("pin",)))
        if state != self._keys_state:
            self._keys_state = state
            self.refresh_bindings()

    # ------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "steer":
            app: Any = self.app
            exp_id, model = self.selected_id(), self.tree_model
            if exp_id is None or model is None or exp_id not in model.rows:
                return None
            if app.selected_run != self.run_id:  # ([ and ] moved the app to another run)
                return None
            row = model.rows[exp_id]
            verb = parameters[0]
            if verb == "veto" and row["verdict"] == BASELINE:
                return None
            if verb == "pin" and (row["verdict"] == RUNNING or row["score"] is None):
                return None
            return app.check_action(str(verb), ())
        return True

    def on_tree_node_selected(self, event: Tree.NodeSelected[int]) -> None:
        """Enter (or a click) opens the experiment, as in the changelog."""
        event.stop()
        if event.node.data is not None:
            app: Any = self.app
            app.open_experiment(event.node.data)

    def action_steer(self, verb: str) -> None:
        exp_id = self.selected_id()
        app: Any = self.app
        # A command goes to the app's selected run: never one of another run's experiments.
        if exp_id is not None and app.selected_run == self.run_id:
            app.steer_experiment(verb, exp_id)

    def go_to(self, exp_id: int) -> None:
        """Move the cursor to an experiment, opening the way down to it."""
        if self.tree_model is None or exp_id not in self.tree_model.rows:
            return
        self._open_paths({exp_id})
        node = self.nodes.get(exp_id)
        if node is None:
            return
        # Once the tree has its lines again: a node opened just now has no line before.
        self.call_after_refresh(self._move_to, node)

    def _move_to(self, node: Node) -> None:
        if self.is_attached:  # (Escape may have come first)
            self.tree.move_cursor(node)
            self._detail()

    def action_best(self) -> None:
        if self.tree_model is not None and self.tree_model.best_id is not None:
            self.go_to(self.tree_model.best_id)

    def action_next_frontier(self) -> None:
        model = self.tree_model
        if model is None or not model.frontier:
            return
        members = sorted(model.frontier)
        now = self.selected_id()
        after = [m for m in members if now is None or m > now]
        self.go_to((after or members)[0])
