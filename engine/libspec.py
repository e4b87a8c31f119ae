"""The spec keys of a library (`library:`) and of the store's growth (`retention:`).

Kept apart from engine/spec.py (which is at its size limit); the models forbid unknown keys
as every spec model does, and spec.py reports their errors at file:line like any other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Library(BaseModel):
    """Caps over every run of one `each:` spec, and how the scheduler rests runs
    (engine/scheduler.py)."""

    model_config = ConfigDict(extra="forbid")

    #: Money the whole library may spend, all time: its runs stop once it is reached.
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: Money the library may spend per day (local midnight to midnight): its runs wait
    #: for the next day once it is reached.
    daily_cost_usd: float | None = Field(default=None, gt=0)
    #: Runs of the library in a round at once; the scheduler picks which ones.
    max_parallel: int | None = Field(default=None, ge=1)
    #: A run rests after this many rounds in a row without a keep (a plateau)...
    rest_after: int = Field(default=10, ge=1)
    #: ...and is tried again after this long, or at once when its file changes.
    rest_minutes: float = Field(default=60, gt=0)
    #: Weight of exploration against the expected gain per dollar (UCB's constant).
    explore: float = Field(default=0.5, ge=0, le=10)
    #: One playbook of what helped across the library's runs, read by every run's model
    #: mutator and updated as they learn (engine/libplaybook.py).
    playbook: bool = True


class Retention(BaseModel):
    """How much of the past the store keeps (engine/retention.py)."""

    model_config = ConfigDict(extra="forbid")

    #: Item results and file versions of reverted experiments older than this many days
    #: are pruned (their changelog rows stay: description, verdict, score, diff).
    keep_days: float | None = Field(default=None, gt=0)
    #: At most this many reverted experiments per run keep their item results and files.
    max_reverted: int | None = Field(default=None, ge=1)
