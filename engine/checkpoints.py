"""Held-out checkpoints as the store keeps them: one row of kind `holdout` per scoring of the
best version on the held-out part (engine/holdout.py makes them). Light on purpose: the app,
status and exports read these without importing the engine's run machinery."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: The experiment kind (and verdict) of a held-out scoring.
HOLDOUT = "holdout"


@dataclass
class Point:
    """One held-out checkpoint: the version scored, its optimized and held-out scores."""

    exp_id: int  # the holdout experiment
    version: int  # the version scored
    optimized: float
    held_out: float
    se: float  # the held-out score's standard error


def point_of(row: dict[str, Any]) -> Point | None:
    if row["verdict"] != HOLDOUT or not row["metrics_json"]:
        return None
    m = json.loads(row["metrics_json"])
    if "holdout_score" not in m or "optimized_score" not in m:
        return None
    return Point(row["id"], row["parent"], m["optimized_score"], m["holdout_score"],
                 m.get("holdout_se", 0.0))


@dataclass
class Checkpoint:
    """A held-out scoring as the app draws it: the round it came after, and its point."""

    round: int
    point: Point


def checkpoints(store: Any, run_id: int) -> list[Checkpoint]:
    """A run's finished held-out scorings, oldest first (the chart's second series)."""
    out = []
    for row in store.experiments_of_kind(run_id, HOLDOUT):
        point = point_of(row)
        if point is not None:
            out.append(Checkpoint(row["round"] or 0, point))
    return out


def holdout_summary(store: Any, run_id: int) -> dict[str, Any]:
    """The held-out scores of a run's first and latest checkpoints (for status and exports)."""
    points = [p for p in map(point_of, store.experiments_of_kind(run_id, HOLDOUT)) if p]
    if not points:
        return {"holdout_baseline": None, "holdout_best": None, "holdout_version": None}
    return {"holdout_baseline": points[0].held_out, "holdout_best": points[-1].held_out,
            "holdout_version": points[-1].version}
