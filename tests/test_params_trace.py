"""The params search's proposals for a seed, pinned: work on its speed must not move it.

Two seeded traces over a mixed space (a linear and a log float, an int, a choice) on a toy
objective: one with soft scores (the ranked model), one without and with proposals undone as
a proposal made ahead is (the kept/reverted model, its observation window rebuilt). Their
digests were taken before the search's arrays were reworked (engine/mutators/paramwindow.py)
and held through it. A change meant to alter the search changes them: print the new ones with
`python tests/test_params_trace.py` and say in the commit why the search moved.
"""

from __future__ import annotations

import hashlib
import json
import math

from engine import spec as specs
from engine.mutators.paramsearch import Search

PARAMS = {
    "x": specs.Param(type="float", min=0, max=10),
    "lr": specs.Param(type="float", min=1e-5, max=1, scale="log"),
    "n": specs.Param(type="int", min=1, max=64),
    "act": specs.Param(type="choice", values=["relu", "gelu", "tanh"]),
}
START = {"x": 1.0, "lr": 0.1, "n": 3, "act": "relu"}

WITH_MARGINS = "c70af584f50855da56b73b99f896eeb6"
WITHOUT_MARGINS_UNDONE = "221a3338ccb7ec2b020a67329d445e4e"


def _objective(v: dict) -> float:
    return (-((v["x"] - 7.3) ** 2) - (math.log10(v["lr"]) + 2.5) ** 2
            - abs(v["n"] - 40) / 10 + (v["act"] == "gelu"))


def trace(margins: bool, seeds: int = 3, rounds: int = 250) -> str:
    out = []
    for seed in range(seeds):
        search = Search(PARAMS, seed, maximize=margins or seed % 2 == 0)
        best, best_score = dict(START), _objective(START)
        for r in range(rounds):
            if not margins and r % 5 == 0:  # a proposal made ahead, then undone
                saved = search.snapshot()
                values, _ = search.propose(best, best_score=best_score)
                search.restore(saved, search.space.key(values))
            values, move = search.propose(best, best_score=best_score)
            score = _objective(values)
            kept = score > best_score if search.ranks.sign > 0 else score < best_score
            search.feedback(values, move, kept)
            soft = (-abs(score - best_score) if r % 3 else None) if margins else None
            search.observe(values, move, round(score, 1 if margins else 2), soft)
            if kept:
                best, best_score = values, score
            out.append([values, move])
    return hashlib.sha256(json.dumps(out).encode()).hexdigest()[:32]


def test_the_seeded_trace_with_soft_scores_is_unchanged():
    assert trace(margins=True) == WITH_MARGINS


def test_the_seeded_trace_without_soft_scores_and_with_undone_proposals_is_unchanged():
    assert trace(margins=False) == WITHOUT_MARGINS_UNDONE


if __name__ == "__main__":
    print(f'WITH_MARGINS = "{trace(margins=True)}"')
    print(f'WITHOUT_MARGINS_UNDONE = "{trace(margins=False)}"')
