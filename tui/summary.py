"""Numbers the screen shows, computed from store rows: formatting, live elapsed time, what stops
a run next, the noise band, and the chart's series. Free of Textual (and of rich) so the rules
are tested on their own."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from engine.model import ADVANCING, BASELINE, FAILURES, RUNNING, VETOED
from engine.text import printable

#: Statuses in which an engine is (or should be) working on the run.
LIVE = frozenset({"starting", "running", "paused"})


def improvement(candidate: float, best: float, direction: str) -> float:
    """Gain of candidate over best, positive when better: `engine.decide.improvement`, restated
    so the app need not import the decision code (and pydantic) to start; a test keeps the
    two equal."""
    return candidate - best if direction == "maximize" else best - candidate


#: SI prefixes by power of 1000 (µ, not u: the screen is Unicode anyway).
_PREFIX = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T"}


def fmt_num(value: float | None, digits: int = 4, width: int = 6, sign: bool = False) -> str:
    """A number in at most `width` characters (plus a sign): `digits` significant digits,
    fewer if they do not fit, and an SI prefix beyond 0.001–999 (`17.5k`, `1.13M`, `250µ`),
    never an exponent that a narrow column would cut (`1.134e…`)."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # A metric an evaluation printed as something else: shown as text, never obeyed.
        return printable(str(value), one_line=True)[:width + 1]
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("-inf" if value < 0 else "+inf" if sign
                                                 else "inf")
    if value == 0:
        return "+0" if sign else "0"
    magnitude = abs(value)
    power = 0 if 1e-3 <= magnitude < 1000 else math.floor(math.log10(magnitude) / 3)
    if not -4 <= power <= 4:  # beyond the prefixes: an exponent it must be
        mantissa, exponent = f"{value:{'+' if sign else ''}.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    for places in range(max(1, digits), 0, -1):
        p = power
        text = _sig(magnitude / 1000 ** p, places)
        if float(text) >= 1000 and p < 4:  # rounding carried over: 999.96 → 1.000k
            p += 1
            text = _sig(magnitude / 1000 ** p, places)
        text += _PREFIX[p]
        if len(text) <= width:
            break
    lead = "-" if value < 0 else "+" if sign else ""
    return lead + text


def _sig(value: float, places: int) -> str:
    """`value` (0.001 ≤ value < 1000, or a scaled one) to `places` significant digits, as a
    plain decimal with no trailing zeros."""
    if value == 0:
        return "0"
    decimals = max(0, places - 1 - math.floor(math.log10(value)))
    text = f"{round(value, decimals):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_score(value: float | None) -> str:
    return fmt_num(value)


def fmt_delta(delta: float | None, direction: str) -> tuple[str, bool | None]:
    """The delta as text, and whether it is an improvement (None: no change or no delta)."""
    if delta is None:
        return "", None
    gain = improvement(delta, 0.0, direction)
    return fmt_num(delta, digits=3, sign=True), None if gain == 0 else gain > 0


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fmt_cost(usd: float | None) -> str:
    usd = usd or 0.0
    return f"${usd:.2f}" if usd >= 1 else f"${usd:.4f}"


def live_elapsed(run: dict[str, Any], now: float) -> float:
    """Run time so far; while an engine holds the run, counted on from its last heartbeat."""
    elapsed = run.get("elapsed") or 0.0
    if run.get("status") in LIVE and run.get("engine_pid") and run.get("heartbeat"):
        elapsed += max(0.0, now - run["heartbeat"])
    return elapsed


@dataclass
class Outlook:
    """One stop rule and how close the run is to it (0: just started, 1: stops now)."""

    text: str
    progress: float


def stop_outlook(run: dict[str, Any], spec: dict[str, Any], recent: list[dict[str, Any]],
                 now: float) -> list[Outlook]:
    """What stops the run next, nearest first, from its spec's `stop` section and its rows.

    `recent` is the run's newest experiments, newest first (the engine applies the same rules).
    """
    stop = spec.get("stop") or {}
    out: list[Outlook] = []
    rounds = run.get("rounds") or 0
    if stop.get("max_rounds"):
        cap = stop["max_rounds"]
        out.append(Outlook(f"{max(0, cap - rounds)} rounds left", rounds / cap))
    if stop.get("max_minutes"):
        cap = stop["max_minutes"] * 60
        used = live_elapsed(run, now)
        out.append(Outlook(f"{fmt_duration(cap - used)} left", used / cap))
    if stop.get("max_cost_usd"):
        cap = stop["max_cost_usd"]
        used = run.get("cost_usd") or 0.0
        out.append(Outlook(f"{fmt_cost(max(0.0, cap - used))} budget left", used / cap))
    finished = [r for r in recent if r["verdict"] != RUNNING]
    target = run.get("target")
    streak = stop.get("streak") or 3
    if target is not None:
        direction = run.get("direction") or "maximize"
        hits = 0
        for r in finished:
            if r["score"] is None:
                continue
            if improvement(r["score"], target, direction) < 0:
                break
            hits += 1
        out.append(Outlook(f"target {target:g}: {min(hits, streak)}/{streak} in a row",
                           min(hits, streak) / streak))
    candidates = [r for r in finished if r["kind"] != BASELINE]
    if stop.get("plateau"):
        cap = stop["plateau"]
        since = 0
        for r in candidates:
            if r["verdict"] in ADVANCING:
                break
            since += 1
        out.append(Outlook(f"plateau {min(since, cap)}/{cap}", min(since, cap) / cap))
    if stop.get("max_failures"):
        cap = stop["max_failures"]
        fails = 0
        for r in candidates:
            if r["verdict"] not in FAILURES:
                break
            fails += 1
        if fails:
            out.append(Outlook(f"failures {min(fails, cap)}/{cap} in a row", fails / cap))
    out.sort(key=lambda o: -o.progress)
    return out


def noise_band(noise_json: str | None) -> tuple[float | None, str]:
    """The half-width of the noise band and a one-line description, from `runs.noise_json`.

    Understands `{"band": h}` (a half-width), `{"sd"|"std"|"stdev"|"sigma": s}` (shown as ±2σ),
    with an optional `n` (evaluations it was measured from); anything else is shown as is.
    """
    if not noise_json:
        return None, ""
    try:
        data = json.loads(noise_json)
    except ValueError:
        return None, noise_json[:60]
    if isinstance(data, (int, float)):
        return float(data), f"±{data:.3g}"
    if not isinstance(data, dict):
        return None, str(data)[:60]
    n = data.get("n") or data.get("repeats")
    suffix = f" over {n} evals" if n else ""
    for key in ("band", "half_width", "floor", "noise"):
        if isinstance(data.get(key), (int, float)):
            return float(data[key]), f"±{data[key]:.3g}{suffix}"
    for key in ("sd", "std", "stdev", "sigma"):
        if isinstance(data.get(key), (int, float)):
            return 2 * float(data[key]), f"±{2 * data[key]:.3g} (2σ){suffix}"
    shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in data.items())
    return None, shown[:60]


@dataclass
class Series:
    """The score chart's data: points by verdict, and the best-so-far as a step line."""

    kept: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    reverted: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    vetoed: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    best: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    count: int = 0


class ChartData:
    """Builds a run's chart series incrementally: each draw reads only the points that
    finished since the last one (a run of 10,000 experiments must not cost 10,000 steps
    twice a second). Points are fed oldest first; a rewritten verdict needs `reset()`."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.done = 0
        self.count = 0
        self.last_round = 0
        self.best: float | None = None
        self.kept: tuple[list[float], list[float]] = ([], [])
        self.steps: tuple[list[float], list[float]] = ([], [])
        self.others: list[tuple[int, float, bool]] = []

    def feed(self, points: dict[int, list[Any]]) -> None:
        """Take in the points after the ones already read, up to the first one in flight."""
        for rnd, verdict, score in islice(points.values(), self.done, None):
            if verdict == RUNNING:
                break  # read again next time, once it has landed
            self.done += 1
            if score is None:
                continue
            self.count += 1
            self.last_round = max(self.last_round, rnd)
            if verdict in ADVANCING:
                self.kept[0].append(rnd)
                self.kept[1].append(score)
                # Every advancing experiment became the best version when it landed (a
                # pinned one even if worse), so the best-so-far steps to its score there.
                if self.best is not None:
                    self.steps[0].append(rnd)
                    self.steps[1].append(self.best)
                self.best = score
                self.steps[0].append(rnd)
                self.steps[1].append(score)
            else:
                self.others.append((rnd, score, verdict == VETOED))

    def series(self, max_points: int = 600) -> Series:
        """Kept points all drawn; beyond `max_points` the others are thinned to the lowest
        and highest score per bucket of rounds, so 10,000 experiments draw as fast as 600."""
        out = Series(kept=(list(self.kept[0]), list(self.kept[1])), count=self.count)
        if self.best is not None:
            out.best = (self.steps[0] + [max(self.last_round, self.steps[0][-1])],
                        self.steps[1] + [self.best])
        others = self.others if len(self.others) <= max_points else _thin(self.others,
                                                                          max_points)
        for rnd, score, vetoed in others:
            target = out.vetoed if vetoed else out.reverted
            target[0].append(rnd)
            target[1].append(score)
        return out


def chart_series(points: dict[int, list[Any]], max_points: int = 600) -> Series:
    """The chart's series from every point at once (see `ChartData` for the incremental way)."""
    data = ChartData()
    data.feed(points)
    return data.series(max_points)


def _thin(points: list[tuple[int, float, bool]], max_points: int) -> list[tuple[int, float, bool]]:
    buckets = max(1, max_points // 2)
    lo, hi = points[0][0], points[-1][0]
    width = max(1.0, (hi - lo + 1) / buckets)
    chosen: dict[int, list[tuple[int, float, bool]]] = {}
    for p in points:
        b = math.floor((p[0] - lo) / width)
        pair = chosen.get(b)
        if pair is None:
            chosen[b] = [p, p]
        else:
            if p[1] < pair[0][1]:
                pair[0] = p
            if p[1] > pair[1][1]:
                pair[1] = p
    out = []
    for pair in chosen.values():
        out.append(pair[0])
        if pair[1] is not pair[0]:
            out.append(pair[1])
    return out
