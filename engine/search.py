"""Search strategies: which versions the next candidates are proposed from.

    greedy    every candidate is a child of the best version (one branch, depth first)
"""

from __future__ import annotations

from engine import spec as specs
from engine.versions import Version, Versions


class Greedy:
    """Climb one branch: every candidate is proposed from the best version."""

    def __init__(self, versions: Versions) -> None:
        self.versions = versions

    def parents(self, n: int) -> list[Version]:
        best = self.versions.best
        assert best is not None
        return [best] * n

    def resume(self) -> None:
        """Nothing to restore beyond the best version."""


def build_search(spec: specs.Spec, versions: Versions) -> Greedy:
    return Greedy(versions)
