"""The params search's space: parameters as coordinates in the unit cube (log-scale ones
in log space, choices as indices), values as they are written, and the kernel the model
uses."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from engine import spec as specs


def _round_sig(value: float, digits: int = 4) -> float:
    if value == 0:
        return 0.0
    return round(value, -int(math.floor(math.log10(abs(value)))) + digits - 1)


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

    def unit(self, name: str, value: Any) -> float:
        p = self.params[name]
        lo, hi = float(p.min), float(p.max)  # type: ignore[arg-type]
        value = min(max(float(value), lo), hi)
        if p.scale == "log":
            return (math.log(value) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return (value - lo) / (hi - lo)

    def value(self, name: str, u: float) -> Any:
        """The value at unit coordinate u, as it is written (ints rounded, floats to 4
        significant digits)."""
        p = self.params[name]
        lo, hi = float(p.min), float(p.max)  # type: ignore[arg-type]
        u = min(max(u, 0.0), 1.0)
        if p.scale == "log":
            raw = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            raw = lo + u * (hi - lo)
        return round_value(p, raw)

    def key(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(values[n] for n in self.names)

    def uniform(self, rng: random.Random) -> dict[str, Any]:
        return {n: rng.choice(self.params[n].values or []) if n not in self.numeric
                else self.value(n, rng.random()) for n in self.names}


def round_value(param: specs.Param, value: float) -> Any:
    """A value in the parameter's range as it is written: ints rounded, floats to 4
    significant digits (a changelog reads `lr 0.02 → 0.0125`, not 17 digits)."""
    lo, hi = float(param.min), float(param.max)  # type: ignore[arg-type]
    value = min(max(value, lo), hi)
    if param.type == "int":
        return int(min(max(round(value), math.ceil(lo)), math.floor(hi)))
    rounded = _round_sig(value)
    return float(rounded if lo <= rounded <= hi else value)


def reflect(u: float) -> float:
    """u folded back into [0, 1] (a step past a bound comes back, not stuck on it)."""
    u = abs(u) % 2.0
    return 2.0 - u if u > 1.0 else u


def parzen(u: float, centres: np.ndarray, h: float) -> float:
    """A Gaussian kernel density on [0, 1] with a uniform prior of one kernel's weight.
    (numpy: the model weighs two dozen draws against up to 160 versions a proposal, and a
    loop of exp() calls was most of the engine's time a round on a millisecond evaluation.)"""
    kernels = np.exp(-0.5 * ((u - centres) / h) ** 2).sum() / (h * 2.5066282746310002)
    return float((1.0 + kernels) / (len(centres) + 1))
