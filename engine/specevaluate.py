"""The spec's `evaluate:` section: a checklist (its items, producer, inputs, held-out split
and judge), a metric command (with guard and constraints) or a test suite."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from engine.specbase import Strict, compiled
from engine.specmutators import LLMSettings
from engine.splits import split_inputs


class WordBounds(Strict):
    min: int | None = None
    max: int | None = None


class JsonCheck(Strict):
    #: Dotted path into the sample parsed as JSON (its last JSON line), e.g. `stats.acc`.
    path: str
    min: float | None = None
    max: float | None = None
    equals: Any = None



class Item(Strict):
    """One yes/no question. Exactly one check: deterministic, or a `question` for an LLM judge."""

    name: str
    question: str | None = None
    regex: str | None = None
    contains: str | None = None
    not_contains: str | None = None
    words: WordBounds | None = None
    json_: JsonCheck | None = Field(default=None, alias="json")
    command: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_check(self) -> Item:
        checks = [
            k
            for k in ("regex", "contains", "not_contains", "words", "json_", "command")
            if getattr(self, k) is not None
        ]
        if len(checks) > 1:
            raise ValueError(f"item `{self.name}` has several checks ({', '.join(checks)}); give one")
        if not checks and self.question is None:
            raise ValueError(
                f"item `{self.name}` needs a check: regex, contains, not_contains, words, json, "
                "command, or a `question` for an LLM judge"
            )
        return self

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return compiled(value)


class ProduceCommand(Strict):
    kind: Literal["command"]
    #: Run once per input and sample; `{input}` and `{sample}` are substituted, and the
    #: input also arrives on stdin. Its stdout is the sample judged by the items.
    command: str
    timeout_s: float = Field(default=120, gt=0)


class ProduceLLM(LLMSettings):
    kind: Literal["llm"]
    #: The target file used as the system prompt.
    system_file: str | None = None


Produce = Annotated[ProduceCommand | ProduceLLM, Field(discriminator="kind")]


class HoldoutSplit(Strict):
    """Hold out a seeded random fraction of a checklist's inputs (engine/holdout.py)."""

    fraction: float = Field(gt=0, lt=1)
    seed: int = 0


class JudgeSettings(LLMSettings):
    #: `labels`: a person's labelled disagreements go in the judge's cached prompt prefix as
    #: few-shot examples (engine/labels.py).
    examples: Literal["labels"] | None = None


class ChecklistEval(Strict):
    kind: Literal["checklist"]
    produce: Produce
    inputs: list[str] = Field(default_factory=lambda: [""], min_length=1)
    #: Held-out inputs: never optimized on nor shown to the mutator, scored on the best
    #: version now and then to see overfitting (a list, or a fraction of `inputs`). After
    #: validation this is always the list, and `inputs` holds only the optimized ones.
    holdout: list[str] | HoldoutSplit | None = None
    samples: int = Field(default=1, ge=1)
    items: list[Item] = Field(min_length=1)
    judge: JudgeSettings | None = None
    #: Run the producing command for several inputs/samples at once.
    concurrency: int = Field(default=1, ge=1)
    #: Judge up to this many samples of one input in one call (the same instructions and
    #: questions for all of them, answered in one reply); 1 judges each output on its own.
    judge_batch: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ChecklistEval:
        names = [i.name for i in self.items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"item names must be unique; repeated: {', '.join(dupes)}")
        self.inputs, self.holdout = split_inputs(self.inputs, self.holdout)
        return self


class Constraint(Strict):
    """A bound on a secondary metric (`{metric: peak_vram_mb, max: 80000}`): a candidate that
    breaks it is reverted, however good its score."""

    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError(f"constraint on `{self.metric}` needs `max` or `min`")
        return self


class MetricEval(Strict):
    kind: Literal["metric"]
    command: str
    #: Read from a `METRIC name=value` line, then a `name: value` / `name=value` line (the
    #: last one wins), then the last JSON line's key `name`; every other number printed so
    #: is kept as a secondary metric.
    metric: str
    #: Optional regex with one group that captures the value instead.
    regex: str | None = None
    direction: Literal["minimize", "maximize"] = "minimize"
    timeout_s: float = Field(default=600, gt=0)
    #: A command that must exit 0 for a candidate to be kept (e.g. the tests still pass).
    guard: str | None = None
    #: Bounds on secondary metrics a kept candidate must respect.
    constraints: list[Constraint] = []
    #: The same measurement on held-out data (another split, other seeds): scored on the
    #: best version now and then, never deciding a keep (engine/holdout.py).
    holdout_command: str | None = None


class TestsEval(Strict):
    kind: Literal["tests"]
    #: A command that writes JUnit XML, e.g. `pytest -q --junitxml=report.xml`.
    command: str
    junit: str = "report.xml"
    timeout_s: float = Field(default=600, gt=0)
    #: A regex on test names (`class::name`): matching tests are held out, never deciding a
    #: keep, scored on the best version now and then (engine/holdout.py).
    holdout: str | None = None

    @field_validator("holdout")
    @classmethod
    def _holdout_compiles(cls, value: str | None) -> str | None:
        return compiled(value)


Evaluate = Annotated[ChecklistEval | MetricEval | TestsEval, Field(discriminator="kind")]
