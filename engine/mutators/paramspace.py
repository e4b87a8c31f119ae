"""The params search's space: parameters as coordinates in the unit cube (log-scale ones
in log space, choices as indices), values as they are written, and the kernel the model
uses."""

from __future__ import annotations

import itertools
import math
import operator
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import spec as specs


def _round_sig(value: float) -> float:
    """To 4 significant digits: as `round(value, 3 - floor(log10 |value|))` (both round the
    exact binary value half to even; 2 million random values agree), in one C call."""
    return float(f"{value:.4g}")


class Space:
    """The parameters, as coordinates in the unit cube (choices as indices)."""

    def __init__(self, params: dict[str, specs.Param]) -> None:
        self.params = params
        self.names = list(params)
        self.numeric = [n for n in self.names if params[n].type != "choice"]
        #: Distinct value combinations when every parameter is discrete, else None.
        self.size: int | None = 1
        for p in params.values():
            if p.type == "float":
                self.size = None
                break
            count = len(p.values or []) if p.type == "choice" else int(
                math.floor(p.max) - math.ceil(p.min) + 1)  # type: ignore[arg-type]
            self.size *= max(count, 1)  # type: ignore[operator]
        #: Per numeric parameter: its bounds, whether on a log scale, and the unit
        #: interval's origin and span in that scale (worked out once: the search converts
        #: thousands of values a second on a fast evaluation).
        self._scales: dict[str, tuple[float, float, bool, float, float]] = {}
        for n in self.numeric:
            p = params[n]
            lo, hi = float(p.min), float(p.max)  # type: ignore[arg-type]
            log = p.scale == "log"
            self._scales[n] = (lo, hi, log, math.log(lo) if log else lo,
                               math.log(hi) - math.log(lo) if log else hi - lo)
        #: Each numeric parameter's column in a point (choices take one column per value).
        self.column: dict[str, int] = {}
        width = 0
        for n in self.names:
            if n in self._scales:
                self.column[n] = width
                width += 1
            else:
                width += len(params[n].values or [])
        self._ints = {n for n in self.numeric if params[n].type == "int"}
        #: A combination's key: its values in the parameters' order.
        self.key: Callable[[dict[str, Any]], tuple[Any, ...]] = _key_getter(self.names)

    def unit(self, name: str, value: Any) -> float:
        lo, hi, log, origin, span = self._scales[name]
        value = min(max(float(value), lo), hi)
        if log:
            return (math.log(value) - origin) / span
        return (value - origin) / span

    def point(self, values: dict[str, Any]) -> list[float]:
        """Unit coordinates (a choice: 0 or 0.5 per value, so a switch is a step of 0.5)."""
        out: list[float] = []
        for name in self.names:
            if name in self._scales:
                out.append(self.unit(name, values[name]))
            else:
                out.extend(0.5 * (values[name] == v) for v in self.params[name].values or [])
        return out

    def value(self, name: str, u: float) -> Any:
        """The value at unit coordinate u, as it is written (ints rounded, floats to 4
        significant digits)."""
        return self.value_at(name, u)[0]

    def value_at(self, name: str, u: float) -> tuple[Any, float]:
        """`value(name, u)` and that value's own unit coordinate, in one call (the model
        converts two dozen draws a proposal both ways)."""
        lo, hi, log, origin, span = self._scales[name]
        u = 0.0 if u < 0.0 else 1.0 if u > 1.0 else u
        value = _written(math.exp(origin + u * span) if log else origin + u * span,
                         lo, hi, name in self._ints)  # (bounds worked out once)
        # (within [lo, hi] already: the unit coordinate needs no clamp)
        return value, (math.log(value) - origin) / span if log else (value - origin) / span

    def uniform(self, rng: random.Random) -> dict[str, Any]:
        return {n: rng.choice(self.params[n].values or []) if n not in self.numeric
                else self.value(n, rng.random()) for n in self.names}


def _key_getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:  # (itemgetter of one name gives the value, not a tuple)
        only = names[0]
        return lambda values: (values[only],)
    if not names:
        return lambda values: ()
    return operator.itemgetter(*names)  # type: ignore[return-value]


def round_value(param: specs.Param, value: float) -> Any:
    """A value in the parameter's range as it is written: ints rounded, floats to 4
    significant digits (a changelog reads `lr 0.02 → 0.0125`, not 17 digits)."""
    return _written(float(value), float(param.min), float(param.max),  # type: ignore[arg-type]
                    param.type == "int")


def _written(value: float, lo: float, hi: float, is_int: bool) -> Any:
    value = lo if value < lo else hi if value > hi else value  # (comparisons: a hot path)
    if is_int:
        return int(min(max(round(value), math.ceil(lo)), math.floor(hi)))
    rounded = _round_sig(value)
    return rounded if lo <= rounded <= hi else value


def reflect(u: float) -> float:
    """u folded back into [0, 1] (a step past a bound comes back, not stuck on it)."""
    u = abs(u) % 2.0
    return 2.0 - u if u > 1.0 else u


def matrix(points: Sequence[Sequence[float]]) -> np.ndarray:
    """Rows of unit coordinates as one (n, d) array, three times quicker than np.array's
    reading of a nested list (the model and the restarts read up to 160 rows a proposal)."""
    n, d = len(points), len(points[0]) if points else 0
    return np.fromiter(itertools.chain.from_iterable(points), float, count=n * d).reshape(n, d)


def parzen_many(us: np.ndarray, centres: np.ndarray, h: float) -> np.ndarray:
    """`parzen` at each of `us` at once (one array operation for a model's two dozen
    draws, not one per draw)."""
    kernels = np.exp(-0.5 * ((us[:, None] - centres[None, :]) / h) ** 2).sum(
        axis=1) / (h * 2.5066282746310002)
    return (1.0 + kernels) / (len(centres) + 1)


def parzen(u: float, centres: np.ndarray, h: float) -> float:
    """A Gaussian kernel density on [0, 1] with a uniform prior of one kernel's weight.
    (numpy: the model weighs two dozen draws against up to 160 versions a proposal, and a
    loop of exp() calls was most of the engine's time a round on a millisecond evaluation.)"""
    kernels = np.exp(-0.5 * ((u - centres) / h) ** 2).sum() / (h * 2.5066282746310002)
    return float((1.0 + kernels) / (len(centres) + 1))
