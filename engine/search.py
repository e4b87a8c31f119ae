"""Search strategies: which versions the next candidates are proposed from.

    greedy    every candidate is a child of the best version (one branch, depth first)
    beam      the `width` best versions are parents in turn, best first
    frontier  parents are drawn from the frontier by `pick`: the best (argmax), softmax
              over scores, or epsilon-greedy (the best, or with probability epsilon any
              member)

A version enters the frontier when it beats its parent under the run's decision rule
(engine/settle.py); the frontier keeps the `width` best-scoring ones, never dropping the
run's best (engine/versions.py). Greedy search is the special case of width 1.
"""

from __future__ import annotations

import math
import random

from engine import spec as specs
from engine.model import PINNED
from engine.tree import rank
from engine.versions import Version, Versions


class Greedy:
    """Climb one branch: every candidate is proposed from the best version."""

    name = "greedy"

    def __init__(self, versions: Versions, config: specs.Search) -> None:
        self.versions = versions
        self.config = config

    def parents(self, n: int) -> list[Version]:
        best = self.versions.best
        assert best is not None
        return [best] * n

    def resume(self, run_id: int) -> None:
        """Nothing to restore beyond the best version."""


class Beam(Greedy):
    """The `width` best versions are parents in turn (each wave continues the turn)."""

    name = "beam"

    def __init__(self, versions: Versions, config: specs.Search) -> None:
        super().__init__(versions, config)
        self._turn = 0

    def ranked(self) -> list[Version]:
        """Frontier members, best first (the run's best leads)."""
        best, direction = self.versions.best, self.versions.direction
        others = [v for v in self.versions.members() if v is not best]
        others.sort(key=lambda v: -rank(v, direction))
        return ([best] if best is not None else []) + others

    def parents(self, n: int) -> list[Version]:
        ranked = self.ranked()
        out = [ranked[(self._turn + k) % len(ranked)] for k in range(n)]
        self._turn = (self._turn + n) % max(len(ranked), 1)
        return out

    def resume(self, run_id: int) -> None:
        """The frontier after a restart: the kept and pinned versions (not vetoed) admitted
        again in their order, each the best while it scores highest, so pruning leaves
        what it had left; then the run's best as the store has it."""
        versions = self.versions
        best = versions.best
        if best is None or versions.width <= 1:
            return
        chain = versions.store.advancing_chain(run_id)
        versions.pinned = {r["id"] for r in chain if r["verdict"] == PINNED}
        versions.reset_frontier()
        for row in chain:
            if row["id"] == best.exp_id or row["score"] is None:
                continue
            version = versions.load(row)
            lead = versions.best
            if lead is None or rank(version, versions.direction) > rank(lead, versions.direction):
                versions.set_best(version)
            else:
                versions.admit(version)
        versions.set_best(best)


class Frontier(Beam):
    """Parents drawn from the frontier by a pick policy (seeded: a run repeats its draws).

    Softmax weighs each member by its score and by how many children it has already had:
    a member's weight halves with every `patience` children drawn from it, so a version
    whose children keep failing to beat it (a local optimum, often the best) hands the
    draws to members that have had fewer (a second basin's head): the reason to keep
    them alive at all. A child that beats its parent joins the frontier with no tries.
    (bench/search.py's `trap`: softmax over scores alone tied greedy search there.)"""

    name = "frontier"

    def __init__(self, versions: Versions, config: specs.Search) -> None:
        super().__init__(versions, config)
        self.rng = random.Random(config.seed)
        #: Children drawn from each version so far (experiment id → count).
        self.tries: dict[int, int] = {}

    def parents(self, n: int) -> list[Version]:
        out = []
        for _ in range(n):
            parent = self.pick(self.ranked())
            self.tries[parent.exp_id] = self.tries.get(parent.exp_id, 0) + 1
            out.append(parent)
        return out

    def pick(self, ranked: list[Version]) -> Version:
        cfg = self.config
        if len(ranked) == 1 or cfg.pick == "best":
            return ranked[0]
        if cfg.pick == "epsilon":
            return self.rng.choice(ranked) if self.rng.random() < cfg.epsilon else ranked[0]
        return self.rng.choices(ranked, weights=self.weights(ranked))[0]

    def weights(self, ranked: list[Version]) -> list[float]:
        """Softmax over scores at `temperature` × the frontier's score range, each weight
        halved per `patience` children the member has had."""
        gains = [rank(v, self.versions.direction) for v in ranked]
        known = [g for g in gains if g > -math.inf]
        if not known:
            return [1.0] * len(ranked)
        top, spread = max(known), (max(known) - min(known)) or 1.0
        return [0.0 if g == -math.inf else
                math.exp((g - top) / (self.config.temperature * spread))
                * 0.5 ** (self.tries.get(v.exp_id, 0) / self.config.patience)
                for g, v in zip(gains, ranked, strict=True)]

    def resume(self, run_id: int) -> None:
        """The frontier as Beam rebuilds it, and each version's children counted again
        from the store (every candidate, whatever its verdict)."""
        super().resume(run_id)
        store = self.versions.store
        if store is None:
            return
        rows = store.conn.execute(
            "SELECT parent, COUNT(*) FROM experiments WHERE run_id = ? AND kind = "
            "'candidate' AND parent IS NOT NULL GROUP BY parent", [run_id]).fetchall()
        self.tries = {int(parent): int(count) for parent, count in rows}


STRATEGIES: dict[str, type[Greedy]] = {"greedy": Greedy, "beam": Beam, "frontier": Frontier}


def build_search(spec: specs.Spec, versions: Versions) -> Greedy:
    """The spec's strategy; it sets how many versions the frontier keeps."""
    config = spec.search
    versions.width = 1 if config.strategy == "greedy" else config.width
    # (greedy: the run's branch is the whole frontier; no refs beside it)
    versions.refs.enabled = versions.width > 1 and versions.workspace.is_git
    return STRATEGIES[config.strategy](versions, config)
