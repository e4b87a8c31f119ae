"""A whole spec (`Spec`): its sections, what it derives (direction, target score, workspace)
and the check that its tiers fit its worker groups."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from engine.libspec import Library, Retention
from engine.notify import NotifyHook
from engine.specbase import Strict
from engine.specevaluate import Evaluate, MetricEval
from engine.specloop import Decide, Search, Stop
from engine.specmutators import Mutator
from engine.spectarget import Target
from engine.specworkers import LocalWorker, Promote, Screen, Worker


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    target: Target
    mutator: Mutator
    evaluate: Evaluate
    decide: Decide = Decide()
    stop: Stop = Stop()
    workers: list[Worker] = Field(default_factory=lambda: [LocalWorker(kind="local")], min_length=1)
    #: Candidates proposed and evaluated at once (a wave).
    parallel: int = Field(default=1, ge=1)
    search: Search = Search()
    #: Proposals made ahead of the slots while they evaluate, for mutators that take time (a
    #: model, an agent); default: one wave's worth; 0: propose only when a slot is free.
    ahead: int | None = Field(default=None, ge=0, le=64)
    #: Two-tier screening: a cheap tier for every candidate, the full tier for the top_k.
    screen: Screen | None = None
    promote: Promote | None = None
    #: Score the best version on the held-out inputs after every K keeps (and at the
    #: baseline and the end).
    holdout_every: int = Field(default=3, ge=1)
    notify: list[NotifyHook] = []  # told of a new best, a run's end, an alert (notify.py)
    library: Library | None = None  # caps and scheduling of an `each:` library (libspec.py)
    retention: Retention | None = None  # what the store keeps of the past (retention.py)

    #: Set by `load_spec`: where the spec came from (not a YAML key).
    path: Path | None = Field(default=None, exclude=True)

    @property
    def direction(self) -> str:
        ev = self.evaluate
        return ev.direction if isinstance(ev, MetricEval) else "maximize"

    @property
    def target_score(self) -> float | None:
        if self.stop.target is not None:
            return self.stop.target
        return None if isinstance(self.evaluate, MetricEval) else 0.95

    @property
    def workspace(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return (base / self.target.workspace).resolve()

    @model_validator(mode="after")
    def _tiers_fit_groups(self) -> Spec:
        try:
            self.tier_groups()
        except TierError as exc:  # reported at the field it is about, with its line
            raise ValidationError.from_exception_data("Spec", [{
                "type": PydanticCustomError("tiers", str(exc)), "loc": exc.loc,
                "input": None}]) from None
        return self

    def tier_groups(self) -> tuple[str | None, str]:
        """(screen group, full group). Scores compare only within one tier and one group
        (faster hardware does more inside the same time budget), so each tier has one."""
        groups = list(dict.fromkeys(w.group for w in self.workers))
        wanted = {"screen": self.screen.group if self.screen else None,
                  "promote": self.promote.group if self.promote else None}
        for key, group in wanted.items():
            if group is not None and group not in groups:
                raise TierError(f"no worker in group {group!r} (groups: {', '.join(groups)})",
                                (key, "group"))
        if self.screen is None:
            if self.promote is not None:
                raise TierError("needs a `screen` tier", ("promote",))
            if len(groups) > 1:
                raise TierError(
                    f"workers are in several groups ({', '.join(groups)}) but scores compare "
                    "only within one group: use one group, or a `screen` tier with its own "
                    "group", ("workers",))
            return None, groups[0]
        screen, full = wanted["screen"], wanted["promote"]
        if full is None:
            rest = [g for g in groups if g != screen] if screen else groups
            if len(rest) > 1 or (not rest and len(groups) > 1):
                raise TierError("add `group: NAME`, the worker group of the full tier",
                                ("promote",))
            full = rest[0] if rest else groups[0]
        if screen is None:
            rest = [g for g in groups if g != full]
            if len(rest) > 1:
                raise TierError("add `group: NAME`, the worker group of the screen tier",
                                ("screen",))
            screen = rest[0] if rest else full
        unused = [g for g in groups if g not in (screen, full)]
        if unused:
            raise TierError(f"workers in group {unused[0]!r} belong to no tier", ("workers",))
        return screen, full


class TierError(ValueError):
    """Tiers and worker groups that do not fit; `loc` is the field to point at."""

    def __init__(self, message: str, loc: tuple[str, ...]) -> None:
        super().__init__(message)
        self.loc = loc
