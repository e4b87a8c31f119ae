"""Specs: one YAML file defines a run. Loaded into pydantic models and validated before
anything runs; every error names `file:line`, the field, and what was expected.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.libspec import Library, Retention
from engine.model import UserError
from engine.notify import NotifyHook
from engine.specyaml import YamlRefused, error_line, read_yaml
from engine.splits import split_inputs
from engine.text import printable


class SpecError(UserError):
    """A spec that cannot run. The message is one line: `file:line: field: problem`; user
    text quoted in it (a key with a line break, U+2028, a carriage return) is shown, never
    allowed to break the line."""

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, one_line=True))


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- target


#: Names always skipped when a candidate copy is made; `target.ignore` adds to them.
DEFAULT_IGNORE = [".git", "__pycache__", ".venv", "node_modules", ".pytest_cache"]


class Target(Strict):
    workspace: str = "."
    files: list[str] = []
    #: A glob (relative to the spec): one run per matching file, its only target (library.py).
    each: str | None = None
    protected: list[str] = []
    #: Names skipped when a candidate copy is made (big or irrelevant folders): added to
    #: DEFAULT_IGNORE, never replacing it (a forgotten `.git` would be copied every round);
    #: `!name` takes a default back out.
    ignore: list[str] = list(DEFAULT_IGNORE)

    @field_validator("ignore")
    @classmethod
    def _added_to_defaults(cls, value: list[str]) -> list[str]:
        dropped = {v[1:] for v in value if v.startswith("!")}
        added = [v for v in value if not v.startswith("!")]
        return [n for n in dict.fromkeys([*DEFAULT_IGNORE, *added]) if n not in dropped]

    @model_validator(mode="after")
    def _files_or_each(self) -> Target:
        if not self.files and not (self.each or "").strip():
            raise ValueError("give `files` (a list of target files) or `each` (a glob)")
        return self


# ---------------------------------------------------------------- mutators


class Param(Strict):
    type: Literal["int", "float", "choice"]
    min: float | None = None
    max: float | None = None
    scale: Literal["linear", "log"] = "linear"
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Param:
        if self.type == "choice":
            if not self.values or len(self.values) < 2:
                raise ValueError("a choice parameter needs `values` with at least two entries")
        else:
            if self.min is None or self.max is None:
                raise ValueError(f"a {self.type} parameter needs `min` and `max`")
            if self.min >= self.max:
                raise ValueError("`min` must be below `max`")
            if self.scale == "log" and self.min <= 0:
                raise ValueError("a log-scale parameter needs `min` > 0")
        return self


class ParamsMutator(Strict):
    kind: Literal["params"]
    #: The file holding the parameters (YAML, JSON, TOML, `NAME = value` lines in Python).
    file: str | None = None
    params: dict[str, Param] = Field(min_length=1)
    seed: int | None = None


class LLMSettings(Strict):
    model: str = "claude-sonnet-4-6"  # 4-5 is deprecated (end of life 2026-11-30)
    max_tokens: int = Field(default=4096, gt=0)
    temperature: float = Field(default=1.0, ge=0, le=1)
    timeout_s: float = Field(default=120, gt=0)
    max_retries: int = Field(default=4, ge=0)
    #: USD per million tokens: input, output, cache_write, cache_read.
    prices: dict[str, float] | None = None
    #: The Messages API endpoint; default `ANTHROPIC_BASE_URL`, else Anthropic's own.
    base_url: str | None = None
    #: First wait between retries in seconds, doubling each time (a `retry-after` header wins).
    retry_backoff_s: float = Field(default=2.0, ge=0)
    #: `anthropic-version` to send. Default: the SDK's (2026-10-21), which takes no sampling
    #: parameters, so `temperature` is not sent; "2023-06-01" sends it (models that accept it).
    api_version: str | None = None
    #: After an outage (every retry failed) the run pauses and tries again this many seconds
    #: later, doubling each time up to `outage_retry_max_s` (engine/outage.py).
    outage_retry_s: float = Field(default=30, gt=0)
    outage_retry_max_s: float = Field(default=600, gt=0)
    #: Prompt-cache lifetime: "5m", "1h", or "auto" (1 hour once calls come more than
    #: 4 minutes apart, as in runs with long evaluations).
    cache_ttl: Literal["auto", "5m", "1h"] = "auto"


class LLMMutator(LLMSettings):
    kind: Literal["llm"]
    #: How many earlier experiments are shown whole; older ones are summarised.
    recent: int = Field(default=20, ge=0)
    #: Playbook files (markdown) or earlier runs' names to start from.
    playbooks: list[str] = []


class AgentMutator(Strict):
    kind: Literal["agent"]
    #: The coding-agent command, run in the candidate copy; the prompt arrives on stdin
    #: and in the file named by $AUTORESEARCH_PROMPT.
    command: str
    timeout_s: float = Field(default=600, gt=0)
    recent: int = Field(default=20, ge=0)
    #: USD per million tokens (input, output) for agents that print token counts but no cost
    #: (codex); `claude -p --output-format json` and aider print their cost themselves.
    prices: dict[str, float] | None = None


Mutator = Annotated[ParamsMutator | LLMMutator | AgentMutator, Field(discriminator="kind")]


# ---------------------------------------------------------------- evaluators


class WordBounds(Strict):
    min: int | None = None
    max: int | None = None


class JsonCheck(Strict):
    #: Dotted path into the sample parsed as JSON (its last JSON line), e.g. `stats.acc`.
    path: str
    min: float | None = None
    max: float | None = None
    equals: Any = None


def compiled(regex: str | None) -> str | None:
    """A spec's regex, refused with a message when it does not compile."""
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"regex does not compile: {exc}") from None
    return regex


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


# ---------------------------------------------------------------- decide / stop / workers


class Decide(Strict):
    rule: Literal["greater", "margin", "paired"] = "greater"
    repeats: int = Field(default=1, ge=1)
    aggregate: Literal["mean", "median"] = "mean"
    min_delta: float = Field(default=0.0, ge=0)
    z: float = Field(default=2.0, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    #: Baseline evaluations used to measure the noise floor when the run starts
    #: (default: the larger of `repeats` and 3).
    noise_repeats: int | None = Field(default=None, ge=1)
    #: Re-evaluate a would-be winner before keeping it.
    confirm: bool = False
    #: Re-evaluate the incumbent every K rounds (0: never).
    reeval_every: int = Field(default=0, ge=0)
    #: Stop a candidate's repeats early once it is clearly worse than the best, or clearly
    #: short of the bar it must clear (a sequential test; saves evaluations).
    early_stop: bool = True
    #: Re-run a marginal candidate (margin, paired) up to this many times (0: never).
    retest: int = Field(default=1, ge=0)


class Stop(Strict):
    #: Stop once the score reaches `target` this many times in a row (default 0.95 for
    #: checklists and test suites; none for metrics).
    target: float | None = None
    streak: int = Field(default=3, ge=1)
    max_rounds: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    #: Stop after this many rounds without a keep.
    plateau: int | None = Field(default=None, ge=1)
    max_failures: int | None = Field(default=5, ge=1)
    #: Stop when the held-out score falls while the optimized one rises (overfitting), and
    #: name the version before the divergence as the one to ship.
    overfit: bool = False


class Search(Strict):
    """Which versions candidates are proposed from (engine/search.py)."""

    #: greedy: every candidate from the best version; beam: from the `width` best versions
    #: in turn; frontier: from the frontier, drawn by `pick`.
    strategy: Literal["greedy", "beam", "frontier"] = "greedy"
    #: Versions kept alive as parents (greedy keeps one).
    width: int = Field(default=4, ge=1, le=64)
    #: How frontier search draws a parent: the best, softmax over scores, or the best with
    #: probability 1 - epsilon and any member otherwise.
    pick: Literal["best", "softmax", "epsilon"] = "softmax"
    epsilon: float = Field(default=0.2, ge=0, le=1)
    #: Softmax temperature, as a fraction of the frontier's score range.
    temperature: float = Field(default=1.0, gt=0)
    seed: int | None = None


class LocalWorker(Strict):
    kind: Literal["local"]
    slots: int = Field(default=1, ge=1)
    group: str = "default"


class RemoteWorker(Strict):
    """What SSH and SLURM workers share: a host reached over SSH (for SLURM, the login node),
    its slots, and how the connection is made and watched (engine/workers/sshhost.py)."""

    #: A `~/.ssh/config` alias or `user@host:port`.
    host: str
    slots: int = Field(default=1, ge=1)
    env: dict[str, str] = {}
    group: str = "default"
    #: Accept a host key not in known_hosts (off by default).
    trust_unknown_host: bool = False
    known_hosts: str | None = None
    identity: str | None = None
    ssh_config: str | None = None
    #: Seconds between SSH keepalives; three missed ones mean the host hangs (heartbeat).
    heartbeat_s: float = Field(default=15, gt=0)
    connect_timeout_s: float = Field(default=15, gt=0)
    #: First wait before a failed host is tried again (doubles with each failure).
    backoff_s: float = Field(default=5, gt=0)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        bad = [k for k in env if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an environment variable name")
        return env


class SSHWorker(RemoteWorker):
    kind: Literal["ssh"]
    workdir: str = "/tmp/autoresearch"
    launcher: str = ""
    #: Names passed through from the engine's environment (the values never enter the spec);
    #: they, and `env` names in `secret` or that look secret, are masked in whatever is stored.
    env_from: list[str] = []
    secret: list[str] = []

    def environment(self) -> dict[str, str]:
        """What the worker's commands get: `env_from` from the engine's environment, then `env`."""
        return {**{k: os.environ[k] for k in self.env_from if k in os.environ}, **self.env}


#: A SLURM time limit: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
SLURM_TIME = r"^(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})$"


class SlurmWorker(RemoteWorker):
    """Slots on a SLURM cluster, reached over SSH at a login node (engine/workers/slurm.py)."""

    kind: Literal["slurm"]
    partition: str | None = None
    #: `--gres` of each job (per-job) or of the held allocation (hold).
    gres: str | None = None
    #: Time limit of each job (per-job) or of the held allocation (hold), in SLURM's format.
    time: str | None = None
    #: `hold`: one allocation for the run, an evaluation is a step in it; `per-job`: one
    #: job per evaluation.
    allocation: Literal["hold", "per-job"] = "hold"
    sbatch_args: list[str] = []
    srun_args: list[str] = []
    #: A folder on the login node that the compute nodes see too (a shared filesystem).
    workdir: str = "~/autoresearch"
    #: Hold: a successor allocation is asked for when the current one has less left
    #: (default: 10 minutes, or half the time limit if that is shorter).
    renew_before_s: float | None = Field(default=None, gt=0)
    #: Seconds a job may wait in the queue before the slot counts as failed (none: forever).
    queue_timeout_s: float | None = Field(default=None, gt=0)
    #: Seconds between `squeue` polls while jobs wait.
    poll_s: float = Field(default=2, gt=0)

    @field_validator("time", mode="before")
    @classmethod
    def _slurm_time(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # `time: 30` is thirty minutes, as for sbatch
        if value is not None and not (isinstance(value, str) and re.match(SLURM_TIME, value)):
            raise ValueError(f"{value!r} is not a SLURM time (MINUTES, MM:SS, HH:MM:SS or "
                             "D-HH:MM:SS)")
        return value


Worker = Annotated[LocalWorker | SSHWorker | SlurmWorker, Field(discriminator="kind")]


class Screen(Strict):
    """A cheaper first tier: every candidate of a wave is scored here first."""

    #: Worker group of the screen tier (e.g. the cheaper GPUs).
    group: str | None = None
    #: Checklist: samples per input, and how many of the inputs (the first N).
    samples: int | None = Field(default=None, ge=1)
    inputs: int | None = Field(default=None, ge=1)
    #: The evaluation's time budget in this tier (metric/tests command, checklist producer).
    timeout_s: float | None = Field(default=None, gt=0)
    #: Metric/tests: a different command for screening (e.g. a shorter training run).
    command: str | None = None
    #: Extra environment for the screen tier's commands (AUTORESEARCH_TIER is always set).
    env: dict[str, str] = {}


class Promote(Strict):
    """Which screened candidates go on to the full tier."""

    #: At most this many per wave: the best screen scores that beat the best version's.
    top_k: int = Field(default=1, ge=1)
    #: Worker group of the full tier.
    group: str | None = None


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


# ---------------------------------------------------------------- loading


def _line_for(loc: tuple, data: Any, lines: dict[tuple, int]) -> tuple[int, str]:
    """Map a pydantic error location to the YAML line and a dotted field name.

    Pydantic puts a discriminated union's tag (`metric`, `params`) into locations right after
    the union's field; it is skipped when it equals that mapping's `kind`.
    """
    path: list[Any] = []
    node = data
    tag_skipped = False
    for part in loc:
        if isinstance(node, dict) and not tag_skipped and node.get("kind") == part:
            tag_skipped = True
            continue
        tag_skipped = False
        key = "json" if part == "json_" else part
        if isinstance(node, dict) and key in node:
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        else:
            path.append(key)  # a missing key: name it; the line is its mapping's
            break
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{_shown_key(p)}"
                    for p in path).lstrip(".")
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])], field or "(top level)"
    return 1, field or "(top level)"


def _shown_key(key: object) -> str:
    """A mapping key as it reads in a one-line message: odd ones (empty, with spaces, line
    breaks or other control characters) quoted and escaped."""
    text = str(key)
    if text and text.isprintable() and not any(c.isspace() for c in text):
        return text
    return json.dumps(text)


def parse_spec(text: str, filename: str = "<spec>") -> Spec:
    """Parse and validate spec text. Raises SpecError with a one-line `file:line` message."""
    return _parse(text, filename)[0]


def _parse(text: str, filename: str) -> tuple[Spec, dict[str, Any], dict[tuple, int]]:
    """The spec, and the YAML data and key lines it came from (read once)."""
    try:
        data, lines = read_yaml(text)
    except YamlRefused as exc:
        raise SpecError(f"{filename}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        line, problem = error_line(exc, text)
        raise SpecError(f"{filename}:{line}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{filename}:1: a spec is a mapping of keys (name, target, mutator, ...)")
    try:
        return Spec.model_validate(data), data, lines
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key is the cause, a missing one usually its consequence (`mutater:`
        # makes `mutator` missing): report the unknown key, at its own line.
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(err["loc"])
        if err["type"].startswith("union_tag"):
            loc += ("kind",)
        line, field = _line_for(loc, data, lines)
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        explained = " ".join(_explain(err, errors).split())  # one line, whatever pydantic said
        raise SpecError(f"{filename}:{line}: {field}: {explained}{suffix}") from None


def _explain(err: dict, errors: list[dict]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        guess = _closest_key(err, errors)
        return f"unknown key; did you mean `{guess}`?" if guess else (
            "unknown key (check the spelling)")
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind; expected one of {expected}"
    if kind == "union_tag_not_found":
        return "needs a `kind`"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _closest_key(err: dict, errors: list[dict]) -> str | None:
    """The valid key an unknown one was probably meant to be: first among the keys missing
    beside it, then among every key a spec may have."""
    import difflib

    typed = str(err["loc"][-1])
    parent = tuple(err["loc"][:-1])
    missing = [str(e["loc"][-1]) for e in errors
               if e["type"] == "missing" and tuple(e["loc"][:-1]) == parent]
    for pool in (missing, _all_keys()):
        found = difflib.get_close_matches(typed, pool, n=1, cutoff=0.6)
        if found:
            return found[0]
    return None


def _all_keys() -> list[str]:
    keys: set[str] = set()
    todo: list[type[BaseModel]] = [Strict]
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    keys.discard("path")  # set by load_spec, not a YAML key
    return sorted(keys)


def load_spec(path: str | Path, *, check_files: bool = True) -> Spec:
    """Read, parse and validate a spec file; with `check_files`, the target files must exist."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise SpecError(f"{path}: cannot read spec: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                        f"column {column}); save the spec as UTF-8") from None
    spec, data, lines = _parse(text, str(path))
    spec.path = path.resolve()
    if check_files:
        check_spec_files(spec, text, (data, lines))
    return spec


def check_spec_files(spec: Spec, text: str,
                     read: tuple[dict[str, Any], dict[tuple, int]] | None = None) -> None:
    """Check what validation alone cannot: the workspace and target files exist and are
    confined. `read`: the (data, lines) `text` gave already."""
    data, lines = read or read_yaml(text)
    where = str(spec.path)
    ws = spec.workspace
    if not ws.is_dir():
        line = lines.get(("target", "workspace"), lines.get(("target",), 1))
        raise SpecError(f"{where}:{line}: target.workspace: no such folder: {ws}")
    for index, rel in enumerate(data["target"].get("files", [])):  # each: engine/library.py
        line = lines.get(("target", "files", index), 1)
        full = (ws / rel).resolve()
        if not full.is_relative_to(ws):
            raise SpecError(f"{where}:{line}: target.files[{index}]: {rel} is outside the workspace")
        if not full.is_file():
            raise SpecError(f"{where}:{line}: target.files[{index}]: no such file: {rel}")
        if rel in spec.target.protected:
            raise SpecError(f"{where}:{line}: target.files[{index}]: {rel} is also protected")
    if spec.library is not None and spec.target.each is None:
        raise SpecError(f"{where}:{lines.get(('library',), 1)}: library: only for a spec with "
                        "target.each (one run per file)")
    mut = spec.mutator
    if isinstance(mut, ParamsMutator) and not (mut.file in spec.target.files or spec.target.each):
        line = lines.get(("mutator", "file"), lines.get(("mutator",), 1))
        raise SpecError(f"{where}:{line}: mutator.file: " + ("required field is missing" if
                        mut.file is None else f"{mut.file} is not one of target.files"))


def check_notes(spec: Spec) -> list[str]:
    """What `check` tells about how the spec reads (not warnings): what `ignore:` adds to."""
    if "ignore" not in spec.target.model_fields_set:
        return []
    return [f"target.ignore adds to the default list; candidate copies skip: "
            f"{', '.join(spec.target.ignore)}"]


def checklist_warnings(spec: Spec) -> list[str]:
    """Advice that does not stop a run: the 3–6 item sweet spot of a checklist."""
    ev = spec.evaluate
    if isinstance(ev, ChecklistEval) and not 3 <= len(ev.items) <= 6:
        return [
            f"{spec.path}: evaluate.items: {len(ev.items)} items; 3 to 6 work best "
            "(fewer miss dimensions of quality, more invite gaming the checklist)"
        ]
    return []
