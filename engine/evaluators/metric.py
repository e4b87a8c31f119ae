"""The metric evaluator: run a command in the candidate, read one number from its output.

The number comes from a `METRIC name=value` line (autoresearch's greppable convention), a
regex with one group, or the last JSON line. A missing metric is a crash, never a zero.
"""

from __future__ import annotations

import functools
import json
import math
import re

from engine import spec as specs
from engine.model import CRASHED, TIMEOUT, Evaluation, LineSink, Session


@functools.cache
def _metric_line(name: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*METRIC\s+{re.escape(name)}\s*[=:]\s*(\S+)", re.MULTILINE)


def parse_metric(output: str, name: str, regex: str | None = None) -> float | None:
    """The last value of the metric in the output, or None when it is not there."""
    if regex:
        found = re.findall(regex, output, flags=re.MULTILINE)
        values = [f[0] if isinstance(f, tuple) else f for f in found]
    else:
        values = _metric_line(name).findall(output)
        if not values:
            for line in reversed(output.strip().splitlines()):
                line = line.strip()
                if line.startswith("{") and line.endswith("}"):
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(data, dict) and name in data:
                        values = [data[name]]
                    break
    for raw in reversed(values):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            return value
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
        value = parse_metric(result.output, cfg.metric, cfg.regex)
        if value is None:
            return Evaluation(
                CRASHED, error=f"no `{cfg.metric}` metric in the output (exit {result.exit_code})"
                + last_lines(result.output), log_tail=result.output, duration=result.duration)
        if result.exit_code != 0:
            return Evaluation(CRASHED, error=f"command exited {result.exit_code}"
                              + last_lines(result.output),
                              log_tail=result.output, duration=result.duration)
        metrics = {cfg.metric: value}
        if cfg.guard:
            guard = await session.run(cfg.guard, timeout=cfg.timeout_s, on_line=log)
            metrics["guard_passed"] = float(guard.exit_code == 0)
        return Evaluation("ok", score=value, metrics=metrics, log_tail=result.output,
                          duration=result.duration)
