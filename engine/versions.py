"""The versions a run keeps alive: the best one, and the frontier candidates are drawn from.

A version is an experiment whose files the run may build on (the baseline, a keep, a pin).
The target files on disk, and the run's git branch, hold the best version only (invariant 1);
every other frontier member is a git ref `autoresearch/<run>/v<id>` so it can be checked out,
removed when it leaves the frontier. Greedy search keeps one version, the best.

A Version is replaced, never changed in place (its files, its evaluations after a
re-evaluation): whoever holds one can tell by identity whether it is still current.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.decide import aggregate
from engine.gitrefs import VersionRefs
from engine.model import Evaluation, ItemResult
from engine.noise import restore_evaluations
from engine.store import Store
from engine.tree import prune
from engine.workspace import Workspace


@dataclass(eq=False)
class Version:
    """One version of the target files that candidates may be proposed from."""

    exp_id: int
    files: dict[str, str]
    #: Its evaluations (what a candidate of it is compared with).
    evals: list[Evaluation]
    #: The version it was made from (None for the baseline).
    parent: int | None = None
    score: float | None = None


class Versions:
    """The best version and the frontier, with the files and git history that follow them."""

    def __init__(self, store: Store, workspace: Workspace, how: str, direction: str,
                 width: int = 1, ctx: Any = None) -> None:
        self.store = store
        #: The run's context (its log, the next baseline's note), when a loop owns this.
        self.ctx = ctx
        self.workspace = workspace
        self.how = how  # the spec's decide.aggregate
        self.direction = direction
        #: How many versions the frontier keeps alive (1: greedy).
        self.width = width
        self.best: Version | None = None
        #: Experiment id → version, for every frontier member (the best is one).
        self.frontier: dict[int, Version] = {}
        #: Every version admitted → its parent: the tree between frontier members, which
        #: pruning reads to keep branches apart (engine/tree.py).
        self.lineage: dict[int, int | None] = {}
        #: Pinned versions: never pruned from the frontier.
        self.pinned: set[int] = set()
        #: Frontier members' git refs (enabled for searches wider than one, in git).
        self.refs = VersionRefs(workspace.root, workspace.run_name, enabled=False)

    @property
    def best_id(self) -> int | None:
        return self.best.exp_id if self.best is not None else None

    def make(self, exp_id: int, files: dict[str, str], evals: list[Evaluation],
             parent: int | None) -> Version:
        return Version(exp_id, files, evals, parent, aggregate(evals, self.how))

    def members(self) -> list[Version]:
        """The frontier, oldest first."""
        return list(self.frontier.values())

    def get(self, exp_id: int | None) -> Version | None:
        return self.frontier.get(exp_id) if exp_id is not None else None

    # ------------------------------------------------------------ changes

    def set_best(self, version: Version) -> list[Version]:
        """`version` is the best now (and a frontier member); returns the versions pruned."""
        self.best = version
        return self.admit(version)

    def admit(self, version: Version) -> list[Version]:
        """Add a version to the frontier; returns those pruned to keep it `width` long."""
        self.frontier[version.exp_id] = version
        self.lineage[version.exp_id] = version.parent
        return self._prune()

    def rescored(self, exp_id: int, evals: list[Evaluation]) -> Version | None:
        """A frontier member's evaluations replaced (a re-evaluation): a new Version."""
        old = self.frontier.get(exp_id)
        if old is None:
            return None
        new = Version(old.exp_id, old.files, evals, old.parent, aggregate(evals, self.how))
        self.frontier[exp_id] = new
        if self.best is old:
            self.best = new
        return new

    def drop(self, ids: Iterable[int]) -> list[Version]:
        """Remove versions from the frontier (a veto; the caller moves the best first)."""
        return [self.frontier.pop(i) for i in list(ids) if i in self.frontier]

    def reset_frontier(self) -> None:
        """An empty frontier (resume rebuilds it); the pinned set stays."""
        self.best = None
        self.frontier = {}

    def reset(self) -> None:
        self.best = None
        self.frontier = {}
        self.pinned = set()
        self.lineage = {}

    def _prune(self) -> list[Version]:
        return prune(self.frontier, self.width, self.best, self.pinned, self.direction,
                     self.lineage)

    def load(self, row: dict[str, Any]) -> Version:
        """A version from its experiment's row: its files, and its evaluations — its newest
        re-evaluation's if any, else its own repeats (their scores are in decision_json),
        item results on the first."""
        reeval = self.store.last_reeval(row["run_id"], row["id"])
        source = reeval if reeval and reeval["score"] is not None else row
        evals = restore_evaluations(source["score"], source.get("decision_json"),
                                    stored_evaluation(self.store, source).items)
        return self.make(row["id"], self.store.version_files(row["id"]), evals, row["parent"])

    # ------------------------------------------------------------ files and git

    async def advance(self, version: Version, message: str) -> None:
        """`version` is the new best: its files on disk, a commit on the run's branch, its
        ref; versions pruned from the frontier lose theirs. If a person edited a target file
        while `version` was being scored, their text stays: it is the run's next baseline
        (as engine/handedit.py makes it between rounds), and `version` is not written."""
        previous = self.best
        pruned = self.set_best(version)
        edited = await asyncio.to_thread(self._edited_by_hand, previous, version)
        if edited is not None:
            self._take_hand_edit(edited, version)
            return
        sha = await self.write_and_commit(message)
        if self.refs.enabled:
            await asyncio.to_thread(self._refs_changed, [(version.exp_id, sha)], pruned)

    async def keep(self, version: Version, message: str) -> None:
        """`version` joins the frontier beside the best: a commit under its ref (the work
        tree and the branch are not touched)."""
        if self.best is None:  # a hand edit reset the run this round: a new baseline comes
            return
        pruned = self.admit(version)
        if not self.refs.enabled:
            return
        base = (self.store.experiment(version.parent) or {}).get("git_commit") \
            if version.parent is not None else None
        files = dict(version.files)

        def work() -> str | None:
            sha = None
            if version.exp_id in self.frontier:
                sha = self.refs.save(version.exp_id, files, base, message)
            self._refs_changed([], pruned)
            return sha

        sha = await asyncio.to_thread(work)
        if sha:
            self.store.set_commit(version.exp_id, sha)

    def _edited_by_hand(self, previous: Version | None, version: Version) -> str | None:
        """The first target file on disk that holds neither the best it should hold nor
        `version`'s text: someone else wrote it since the best was written."""
        if previous is None:
            return None
        for rel, content in version.files.items():
            old = previous.files.get(rel)
            try:
                disk = (self.workspace.root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if old is not None and disk not in (old, content):
                return rel
        return None

    def _take_hand_edit(self, rel: str, version: Version) -> None:
        from engine.handedit import NOTE

        if self.ctx is not None:
            self.ctx.log(f"{rel} was edited by hand while #{version.exp_id} was scored: the "
                         f"edit stays and is the run's new baseline (#{version.exp_id} beat "
                         "the old text and is not written over it)", level="warning",
                         exp_id=version.exp_id)
            self.ctx.baseline_note = NOTE
        self.reset()

    def _refs_changed(self, pointed: list[tuple[int, str | None]], pruned: list[Version],
                      ) -> None:
        for exp_id, sha in pointed:
            self.refs.point(exp_id, sha)
        for version in pruned:
            self.refs.drop(version.exp_id)

    def drop_refs(self, versions: list[Version]) -> None:
        self._refs_changed([], versions)

    def finish_advance(self, row: dict[str, Any], message: str) -> None:
        """After any stop: the best version's files on disk and its commit, finishing an
        advance that a kill interrupted (files, then the commit)."""
        assert self.best is not None
        self.workspace.write_best(self.best.files)
        trailer = f"Experiment: {row['id']}"
        if self.workspace.is_git:
            if trailer in self.workspace.head_message():
                sha = self.workspace.head()
            else:
                sha = self.workspace.commit(message, trailer)
            if sha and row["git_commit"] != sha:
                self.store.set_commit(row["id"], sha)

    async def write_and_commit(self, message: str) -> str | None:
        """The best version's files on disk, then a commit on the run's branch (in a thread:
        git is slow); the store is written on this loop."""
        assert self.best is not None
        exp_id, files = self.best.exp_id, dict(self.best.files)

        def work() -> str | None:
            self.workspace.write_best(files)
            return self.workspace.commit(message, f"Experiment: {exp_id}")

        sha = await asyncio.to_thread(work)
        if sha:
            self.store.set_commit(exp_id, sha)
        return sha


def stored_evaluation(store: Store, row: dict[str, Any]) -> Evaluation:
    """An experiment's evaluation as the store has it (its score and item results)."""
    items = [ItemResult(r["item"], None if r["passed"] is None else bool(r["passed"]),
                        r["input"] or "", r["sample"], r["evidence"] or "")
             for r in store.item_results(row["id"])]
    return Evaluation("ok", score=row["score"], items=items)
