"""The metric evaluator: run a command in the candidate, read its numbers from the output.

Scripts print their results in a few habitual forms, read here in this order for the metric
the spec names (with no `regex`):

1. `METRIC name=value` lines (pi-autoresearch's and our greppable convention);
2. `name: value` or `name=value` lines, alone on their line (Karpathy's train.py summary
   block: `val_bpb:          0.997900`); the last occurrence wins, as `grep | tail -1` would;
3. the last JSON line that is an object holding the key.

Every other number printed in those forms is kept as a secondary metric of the experiment
(its `metrics_json`): memory, time, step counts. A missing metric is a crash, never a zero.
`constraints` in the spec bound secondary metrics (`{metric: peak_vram_mb, max: 80000}`): a
candidate that breaks one is reverted with that reason (see `constraint_breach`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from engine import spec as specs
from engine.model import CRASHED, TIMEOUT, Evaluation, LineSink, Session

#: Most secondary metrics kept per experiment: a script printing thousands of distinct keys
#: must not make every row of the store megabytes long.
MAX_METRICS = 100

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NAME = r"[A-Za-z_][A-Za-z0-9_.\-/µ]*"
#: `METRIC name=value` (also `METRIC name: value`), anywhere in the output.
_METRIC_LINE = re.compile(rf"^\s*METRIC\s+({_NAME})\s*[=:]\s*(\S+)")
#: `name: value` / `name=value` alone on its line: a summary block, a `key=value` log.
_FULL_NAME = re.compile(rf"^{_NAME}$")
_KEY_VALUE = re.compile(rf"^\s*({_NAME})\s*[:=]\s*({_NUMBER})\s*$")


def _number(raw: object) -> float | None:
    """A finite float from a printed value or a JSON value (never a bool), else None."""
    if isinstance(raw, bool):
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _last_json(lines: Sequence[str]) -> dict | None:
    """The last line that parses as a JSON object (the usual `print(json.dumps(stats))`)."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return None


def read_metrics(output: str) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Every number the output prints, by form: (METRIC lines, `key: value` lines, last JSON
    line's numeric top-level keys); within a form the last occurrence of a name wins."""
    lines = output.splitlines()  # also splits on \r: progress lines redrawn in place
    tagged: dict[str, float] = {}
    plain: dict[str, float] = {}
    for line in lines:
        if "METRIC" in line and (m := _METRIC_LINE.match(line)):
            value = _number(m.group(2))
            if value is not None:
                tagged.pop(m.group(1), None)  # re-insert: the order shows the newest last
                tagged[m.group(1)] = value
        elif m := _KEY_VALUE.match(line):
            value = _number(m.group(2))
            if value is not None:
                plain.pop(m.group(1), None)
                plain[m.group(1)] = value
    data = _last_json(lines) or {}
    js = {k: v for k, raw in data.items() if isinstance(k, str) and (v := _number(raw)) is not None}
    return tagged, plain, js


def parse_metric(output: str, name: str, regex: str | None = None) -> float | None:
    """The metric's value in the output (see the module's order), or None when it is not there."""
    if regex:
        found = re.findall(regex, output, flags=re.MULTILINE)
        for raw in reversed([f[0] if isinstance(f, tuple) else f for f in found]):
            if (value := _number(raw)) is not None:
                return value
        return None
    tagged, plain, js = read_metrics(output)
    for form in (tagged, plain, js):
        if name in form:
            return form[name]
    return None


def parse_all(output: str, name: str, regex: str | None = None) -> dict[str, float]:
    """The metric (first, under its own name, if found) and every secondary number printed:
    a METRIC line beats a `key: value` line beats the JSON line for the same name."""
    tagged, plain, js = read_metrics(output)
    merged = {**js, **plain, **tagged}
    value = parse_metric(output, name, regex)
    out: dict[str, float] = {} if value is None else {name: value}
    for key, number in merged.items():
        if len(out) >= MAX_METRICS:
            break
        out.setdefault(key, number)
    return out


def metric_notes(spec: specs.Spec) -> list[str]:
    """What `check` says about a metric spec: where the number will be read from, and
    advice when its name cannot appear in a METRIC or `name: value` line."""
    cfg = spec.evaluate
    if not isinstance(cfg, specs.MetricEval):
        return []
    if cfg.regex:
        return [f"evaluate.metric: {cfg.metric} is read with the regex {cfg.regex!r}"]
    if not _FULL_NAME.match(cfg.metric):
        return [f"evaluate.metric: {cfg.metric!r} can only be read from a JSON line's key "
                "(not a name a `METRIC name=value` or `name: value` line can hold); give a "
                "`regex` with one group if the script prints it another way"]
    notes = [f"evaluate.metric: {cfg.metric} is read from `METRIC {cfg.metric}=…`, else the last "
             f"`{cfg.metric}: …` line, else the last JSON line; other numbers printed so are "
             "kept as secondary metrics"]
    notes += [f"evaluate.constraints: a candidate with {c.metric}"
              + (f" > {c.max:g}" if c.max is not None else "")
              + (" or" if c.max is not None and c.min is not None else "")
              + (f" < {c.min:g}" if c.min is not None else "") + " is reverted"
              for c in cfg.constraints]
    return notes


def constraint_breach(evaluate: object, evals: Sequence[Evaluation]) -> str | None:
    """The first constraint of a metric spec that an evaluation breaks, as a changelog reason
    (`peak_vram_mb 81234 > max 80000`), or None. A constrained metric the output did not
    print breaks the constraint too: a bound that cannot be checked does not hold."""
    constraints = getattr(evaluate, "constraints", None) or []
    for ev in evals:
        for c in constraints:
            value = ev.metrics.get(c.metric)
            if value is None:
                return f"constraint: `{c.metric}` not in the output"
            if c.max is not None and value > c.max:
                return f"constraint: {c.metric} {value:g} > max {c.max:g}"
            if c.min is not None and value < c.min:
                return f"constraint: {c.metric} {value:g} < min {c.min:g}"
    return None


#: How much of a crashed command's last output its message quotes.
CRASH_LINES = 3
CRASH_LINE_CHARS = 200


def last_lines(output: str) -> str:
    """`: <its last few lines>` for a crash's one-line message (the shell's own `pyhton: not
    found` says more than an exit status); "" when the command printed nothing."""
    lines = [line.strip() for line in output[-8000:].splitlines() if line.strip()]
    if not lines:
        return ""
    shown = [line if len(line) <= CRASH_LINE_CHARS else line[:CRASH_LINE_CHARS] + "…"
             for line in lines[-CRASH_LINES:]]
    return ": " + " ⏎ ".join(shown)


class MetricEvaluator:
    def __init__(self, config: specs.MetricEval) -> None:
        self.config = config
        self.direction = config.direction

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation:
        cfg = self.config
        result = await session.run(cfg.command, timeout=cfg.timeout_s, on_line=log)
        if result.timed_out:
            return Evaluation(TIMEOUT, error=f"timed out after {cfg.timeout_s:g}s",
                              log_tail=result.output, duration=result.duration)
        metrics = parse_all(result.output, cfg.metric, cfg.regex)
        value = metrics.get(cfg.metric)
        if value is None:
            return Evaluation(
                CRASHED, error=f"no `{cfg.metric}` metric in the output (exit {result.exit_code})"
                + last_lines(result.output), metrics=metrics, log_tail=result.output,
                duration=result.duration)
        if result.exit_code != 0:
            return Evaluation(CRASHED, error=f"command exited {result.exit_code}"
                              + last_lines(result.output), metrics=metrics,
                              log_tail=result.output, duration=result.duration)
        if cfg.guard:
            guard = await session.run(cfg.guard, timeout=cfg.timeout_s, on_line=log)
            metrics["guard_passed"] = float(guard.exit_code == 0)
        return Evaluation("ok", score=value, metrics=metrics, log_tail=result.output,
                          duration=result.duration)

