"""One run's version tree as a reader sees it: every experiment under the version it was
proposed from, with the frontier and the best marked.

The store records each experiment's parent but not the frontier (it lives in the engine, and
in git refs). This module replays it from the store with the engine's own rule
(`prune`, which engine/versions.py uses), the way a resumed run rebuilds it (`engine.search.Beam.resume`),
so the app (tui/tree_screen.py) shows what the engine keeps. No files and no git here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from engine.model import ADVANCING, PINNED


class Member(Protocol):
    """What pruning reads of a version (engine.versions.Version, or `Node` here)."""

    exp_id: int
    parent: int | None
    score: float | None


M = TypeVar("M", bound=Member)


@dataclass(eq=False)
class Node:
    """A version as the replay needs it: no files, no evaluations."""

    exp_id: int
    parent: int | None
    score: float | None


def rank(version: Member, direction: str) -> float:
    """A version's score as a gain (higher is better whatever the direction); -inf unscored."""
    if version.score is None:
        return -math.inf
    return version.score if direction == "maximize" else -version.score


def prune(frontier: dict[int, M], width: int, best: M | None, pinned: set[int],
          direction: str, lineage: Mapping[int, int | None] | None = None) -> list[M]:
    """Shrink `frontier` (in place) to `width`: first the versions a child of theirs in the
    frontier already beat (superseded; lowest score first), then, of the branches' heads,
    the one nearest in the tree to a better member (a sibling or cousin of a better version
    before the head of a branch of its own; lowest score first among equals), so each
    branch's head outlives the ancestors it climbed from and one branch's near-identical
    heads do not crowd out another branch. Never the best or a pinned one. `lineage` maps
    each version ever admitted to its parent (the tree between members); without it only
    the members' own parent links are known. Returns the versions pruned. The engine's
    rule (engine/versions.py), and the app's."""
    pruned: list[M] = []
    while len(frontier) > max(width, 1):
        parents = {v.parent for v in frontier.values()}
        free = [v for v in frontier.values() if v is not best and v.exp_id not in pinned]
        if not free:  # only the best and pinned versions: they stay
            break
        stale = [v for v in free if v.exp_id in parents]
        if stale:
            worst = min(stale, key=lambda v: rank(v, direction))
        else:
            near = _crowding(list(frontier.values()), lineage or {}, direction)
            worst = min(free, key=lambda v: (near[v.exp_id], rank(v, direction)))
        pruned.append(frontier.pop(worst.exp_id))
    return pruned


def _crowding(members: list[M], lineage: Mapping[int, int | None], direction: str,
              ) -> dict[int, float]:
    """Each member's distance in the tree (edges through the nearest common ancestor) to
    the nearest member that ranks above it (of equal scores, the newer: a plateau's walk
    leaves its older ties behind); inf for the top one. Bounded walks: a parent loop
    cannot hang it."""
    limit = len(lineage) + len(members) + 1
    ups: dict[int, dict[int, int]] = {}
    for v in members:
        steps, node, n = {v.exp_id: 0}, v.parent, 1
        while node is not None and node not in steps and n <= limit:
            steps[node] = n
            node, n = lineage.get(node), n + 1
        ups[v.exp_id] = steps

    def apart(a: int, b: int) -> float:
        mine, theirs = ups[a], ups[b]
        common = [mine[k] + d for k, d in theirs.items() if k in mine]
        return min(common) if common else float(len(mine) + len(theirs))

    def key(v: M) -> tuple[float, int]:  # (of equal scores the newest ranks first)
        return rank(v, direction), v.exp_id

    out = {}
    for v in members:
        above = [w for w in members if key(w) > key(v)]
        out[v.exp_id] = min((apart(v.exp_id, w.exp_id) for w in above), default=math.inf)
    return out


def search_width(spec: dict[str, Any]) -> int:
    """How many versions a run's search keeps alive, from its stored spec (greedy: one)."""
    search = spec.get("search") or {}
    if search.get("strategy", "greedy") == "greedy":
        return 1
    width = search.get("width", 4)
    return width if isinstance(width, int) and width > 0 else 1


def replay_frontier(rows: Iterable[dict[str, Any]], width: int, direction: str,
                    best_id: int | None) -> set[int]:
    """The frontier's experiment ids after `rows` (a run's experiments, oldest first): its
    versions admitted in order, each the best while it scores highest, pruned to `width`,
    then the run's recorded best leads."""
    rows = list(rows)
    if best_id is None:
        return set()
    if width <= 1:
        return {best_id}
    # A version's score is its newest re-evaluation's, if that one has a score (as
    # engine.versions.Versions.load reads it).
    newest: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["kind"] == "reeval" and row["parent"] is not None:
            newest[row["parent"]] = row
    chain = [r for r in rows if r["verdict"] in ADVANCING and r["kind"] != "imported"]
    lineage = {r["id"]: r["parent"] for r in chain}
    pinned = {r["id"] for r in chain if r["verdict"] == PINNED}

    def version(row: dict[str, Any]) -> Node:
        again = newest.get(row["id"])
        score = again["score"] if again and again["score"] is not None else row["score"]
        return Node(row["id"], row["parent"], score)

    frontier: dict[int, Node] = {}
    lead: Node | None = None
    best: Node | None = None
    for row in chain:
        if row["id"] == best_id:
            best = version(row)
            continue
        if row["score"] is None:
            continue
        v = version(row)
        if lead is None or rank(v, direction) > rank(lead, direction):
            lead = v
        frontier[v.exp_id] = v
        prune(frontier, width, lead, pinned, direction, lineage)
    if best is None:
        return set(frontier)
    frontier[best.exp_id] = best
    prune(frontier, width, best, pinned, direction, lineage)
    return set(frontier)


@dataclass
class VersionTree:
    """A run's experiments as a tree: `children` of each id (and of None: the roots)."""

    rows: dict[int, dict[str, Any]]
    children: dict[int | None, list[int]] = field(default_factory=dict)
    frontier: set[int] = field(default_factory=set)
    best_id: int | None = None

    @classmethod
    def build(cls, rows: list[dict[str, Any]], width: int, direction: str,
              best_id: int | None) -> VersionTree:
        by_id = {r["id"]: r for r in rows}
        children: dict[int | None, list[int]] = {}
        for row in rows:
            parent = row["parent"] if row["parent"] in by_id else None
            children.setdefault(parent, []).append(row["id"])
        return cls(by_id, children, replay_frontier(rows, width, direction, best_id), best_id)

    def parent_of(self, exp_id: int) -> int | None:
        parent = self.rows[exp_id]["parent"]
        return parent if parent in self.rows else None

    def path_to(self, exp_id: int) -> list[int]:
        """The ids from a root down to `exp_id` (bounded: a parent loop cannot hang it)."""
        path = [exp_id]
        while len(path) <= len(self.rows):
            parent = self.parent_of(path[-1])
            if parent is None or parent in path:
                break
            path.append(parent)
        return path[::-1]
