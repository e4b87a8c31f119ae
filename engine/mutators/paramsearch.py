"""The params mutator's optimizer: which parameter values to try next, from verdicts and
scores.

A run tells the mutator whether each candidate was kept (beat the best) or not and, once
decided, its score and how near its checks came (engine/mutators/paramrank.py). On the
plateaus a pass-rate score makes (most candidates tie the best and are reverted), a climber
that moves one parameter at a time from the best stalls. So each proposal starts from the
best-ranked version seen (the best, or a tie that came nearer its bars) and is one of three
moves; which move is used adapts to what advanced (a bandit whose memory decays):

- `local`: from there, a few parameters (one to all, more after a keep) take a
  Gaussian step in the unit cube (log-scale parameters in log space); the step size follows
  the 1/5 success rule of a (1+1) evolution strategy, and is reset when the best has not
  moved for a while (a plateau is wide, not narrow);
- `model`: a tree-structured Parzen estimate (as Optuna's TPE) of where the best-ranked
  versions lie against where the others lie (kept against reverted, without scores); of
  a few candidates drawn near the good ones the one most likely to be good is proposed;
- `wide`: a restart: some parameters (half the time) or all of them drawn afresh over
  their whole range (a full one: the farthest of a few draws from everything tried):
  random search's strength on plateaus, kept as a floor.

All randomness comes from one `random.Random`; the whole state is a value that can be
copied and put back (a proposal made ahead is undone that way). Memory is bounded: the
model reads the newest observations only, and the values tried are a bounded set.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine import spec as specs
from engine.mutators.paramrank import UNKNOWN_SOFT, Ranks
from engine.mutators.paramspace import Space, matrix, parzen_many, reflect, round_value
from engine.mutators.paramwindow import Window

__all__ = ["Search", "Space", "round_value"]

MOVES = ("local", "model", "wide")
#: Prior successes and tries of each move (a move's chance follows its success rate).
PRIOR = {"local": (2.0, 3.0), "model": (0.8, 3.0), "wide": (0.5, 3.0)}
#: Every round the bandit's counts decay by this factor (the phase of a run changes).
DECAY = 0.95
#: Every move keeps at least this chance.
FLOOR = 0.08
#: The model needs this many observations before it is used.
MODEL_AFTER = 6
#: Observations the model reads (the newest), and values remembered as tried.
OBSERVED_MAX = 160
TRIED_MAX = 4096
#: Local step size in the unit cube: start, bounds, and the 1/5-rule factors.
SIGMA0, SIGMA_MIN, SIGMA_MAX = 0.2, 0.03, 0.5
GROW, SHRINK = math.exp(0.6), math.exp(-0.15)
#: Rounds without a keep after which the local step is widened again (a plateau is wide,
#: not narrow).
STALL = 12
#: Candidates drawn by the model and by a wide move.
MODEL_DRAWS, WIDE_DRAWS = 24, 6
#: The share of restarts that draw only some parameters afresh.
PARTIAL = 0.5
#: The model's good versions: this share of the ranked ones (at least 2, at most 25).
GAMMA = 0.15


@dataclass
class Observation:
    """A candidate's values and whether it was kept (with its key and unit coordinates,
    worked out once: the model and the restarts read every observation each proposal)."""

    values: dict[str, Any]
    kept: bool
    key: tuple[Any, ...] = ()
    point: list[float] = field(default_factory=list)


@dataclass
class SearchState:
    """Everything the search learns (copied whole to undo a proposal made ahead)."""

    sigma: float = SIGMA0
    #: Decayed successes and tries per move.
    wins: dict[str, float] = field(default_factory=lambda: {m: PRIOR[m][0] for m in MOVES})
    tries: dict[str, float] = field(default_factory=lambda: {m: PRIOR[m][1] for m in MOVES})
    #: The newest observations, oldest first, and the best versions seen (kept or given).
    observed: list[Observation] = field(default_factory=list)
    #: Rounds since the last keep.
    stall: int = 0


class Search:
    """Proposes parameter values from the best version's, and learns from verdicts."""

    def __init__(self, params: dict[str, specs.Param], seed: Any,
                 maximize: bool = True) -> None:
        self.space = Space(params)
        self.rng = random.Random(seed)
        self.state = SearchState()
        #: Scores seen (facts, not guesses: an undone proposal leaves them).
        self.ranks = Ranks(TRIED_MAX, maximize)
        #: The best version's (score, soft score) rank, as of the last proposal.
        self.best_rank: tuple[float, float] | None = None
        #: Every value combination proposed (bounded: the oldest are forgotten).
        self.tried: OrderedDict[tuple[Any, ...], None] = OrderedDict()
        #: The newest observations' points and verdicts, as arrays.
        self.window = Window(OBSERVED_MAX)

    # ---------------------------------------------------------------- undo

    def snapshot(self) -> tuple[Any, SearchState]:
        st = self.state  # (observations are never changed, only added: a shallow copy)
        return self.rng.getstate(), SearchState(st.sigma, dict(st.wins), dict(st.tries),
                                                list(st.observed), st.stall)

    def restore(self, saved: tuple[Any, SearchState],
                proposed: tuple[Any, ...] | None = None) -> None:
        state, self.state = saved
        self.rng.setstate(state)
        if proposed is not None:
            self.tried.pop(proposed, None)

    # ---------------------------------------------------------------- proposing

    def remember(self, key: tuple[Any, ...]) -> None:
        self.tried[key] = None
        self.tried.move_to_end(key)
        while len(self.tried) > TRIED_MAX:
            self.tried.popitem(last=False)

    def exhausted(self) -> bool:
        """Every value combination of a discrete space was tried (and is remembered)."""
        size = self.space.size
        return size is not None and size <= TRIED_MAX and len(self.tried) >= size

    def propose(self, best: dict[str, Any], attempts: int = 30,
                best_score: float | None = None,
                follow_ranks: bool = True) -> tuple[dict[str, Any], str]:
        """New values (never tried before, while remembered) and the move that made them;
        raises LookupError when every value combination was tried. `best` is the version
        being edited; with `follow_ranks` (it is the run's best) a step may start from a
        tie that came nearer its bars instead, without (beam and frontier search hand it
        another member of the frontier on purpose) it starts from `best` itself."""
        best_key = self.space.key(best)
        if best_key not in self.tried:
            self.remember(best_key)
        known = self.ranks.get(best_key)
        self.best_rank = known[:2] if known else None if best_score is None else (
            self.ranks.rank_of(best_score, None))
        origin = self.origin(best) if follow_ranks else best
        move = self._pick_move()
        for attempt in range(attempts):
            values = self._make(move, origin, reach=1.0 + attempt / 6)
            key = self.space.key(values)
            if key not in self.tried:
                self.remember(key)
                return values, move
            if attempt == attempts // 2:
                move = "wide"  # the neighbourhood is used up: look further
        values = self._untried(best)
        if values is None:
            raise LookupError("every value combination was tried" if self.space.size else
                              "no untried values found: the ranges hold few values at "
                              "4 significant digits")
        self.remember(self.space.key(values))
        return values, "wide"

    def origin(self, best: dict[str, Any]) -> dict[str, Any]:
        """Where the next step starts: the best-ranked version seen, when it ranks at least
        as high as the best (a tie that came nearer its bars), else the best."""
        top = self.ranks.top()
        if (top is None or self.best_rank is None or top[1][:2] < self.best_rank
                or top[1][1] == UNKNOWN_SOFT):  # (a tie of scores alone says nothing)
            return best
        return dict(zip(self.space.names, top[0], strict=True))

    def _pick_move(self) -> str:
        st = self.state
        rates = {m: st.wins[m] / st.tries[m] for m in MOVES}
        if len(st.observed) < MODEL_AFTER:
            rates["model"] = 0.0
        total = sum(rates.values()) or 1.0
        chances = [max(rates[m] / total, FLOOR if rates[m] else 0.0) for m in MOVES]
        return self.rng.choices(MOVES, weights=chances)[0]

    def _make(self, move: str, best: dict[str, Any], reach: float) -> dict[str, Any]:
        if move == "model":
            return self._model(best)
        if move == "wide":
            return self._wide(best)
        return self._local(best, reach)

    def _local(self, best: dict[str, Any], reach: float) -> dict[str, Any]:
        space, rng = self.space, self.rng
        names = space.names
        # How many move: one, often two or three; all of them now and then.
        count = min(len(names), 1 + int(rng.expovariate(1 / (0.6 + 0.4 * len(names) ** 0.5))))
        chosen = rng.sample(names, count)
        values = dict(best)
        sigma = min(self.state.sigma * reach, 1.0)
        for name in chosen:
            p = space.params[name]
            if p.type == "choice":
                values[name] = rng.choice([v for v in p.values or [] if v != best[name]])
                continue
            u = space.unit(name, best[name])
            new = space.value(name, reflect(u + rng.gauss(0, sigma)))
            if new == best[name] and p.type == "int":  # an int moves by at least one
                step = 1 if rng.random() < 0.5 else -1
                lo, hi = math.ceil(p.min), math.floor(p.max)  # type: ignore[arg-type]
                new = min(max(int(best[name]) + step, lo), hi)
                if new == best[name]:
                    new = min(max(int(best[name]) - step, lo), hi)
            values[name] = new
        return values

    def _wide(self, best: dict[str, Any]) -> dict[str, Any]:
        """A fresh point: of a few uniform draws, the farthest from every observation; half
        the time only some parameters are drawn afresh, the others kept from the best (a
        plateau's way out often needs two or three far moves at once, not all seven)."""
        space, rng = self.space, self.rng
        if len(space.names) > 2 and rng.random() < PARTIAL:
            chosen = rng.sample(space.names, rng.randint(2, len(space.names) - 1))
            fresh = space.uniform(rng)
            return {n: fresh[n] if n in chosen else best[n] for n in space.names}
        draws = [space.uniform(rng) for _ in range(WIDE_DRAWS)]
        seen = self.window.points(self.state.observed)
        if seen is None:
            return draws[0]
        points = matrix([space.point(d) for d in draws])
        # Each draw's squared distance to its nearest observation; the first farthest wins.
        room = ((seen[None, :, :] - points[:, None, :]) ** 2).sum(axis=2).min(axis=1)
        return draws[int(np.argmax(room))]

    def _distance(self, a: dict[str, Any], b: dict[str, Any]) -> float:
        space = self.space
        total = 0.0
        for name in space.names:
            if name in space.numeric:
                total += (space.unit(name, a[name]) - space.unit(name, b[name])) ** 2
            elif a[name] != b[name]:
                total += 0.25
        return total

    def _split(self, best: dict[str, Any]) -> tuple[list[Observation], list[Observation],
                                                    np.ndarray, np.ndarray]:
        """The model's good and bad versions, with their points: the top of the ranking
        against the rest, or (without scores) kept against reverted; the start (`best`) is
        the last good one."""
        space = self.space
        start = Observation(best, True, space.key(best), space.point(best))
        if self.ranks.with_margins >= MODEL_AFTER:
            by_key = {o.key: o for o in self.state.observed[-OBSERVED_MAX:]}
            ranked = self.ranks.ordered(by_key, margins_only=True)
            if len(ranked) >= MODEL_AFTER:
                cut = max(2, min(25, math.ceil(GAMMA * len(ranked))))
                good = [by_key[k] for k in ranked[:cut] if k != start.key] + [start]
                bad = [by_key[k] for k in ranked[cut:]] or [start]
                return good, bad, matrix([g.point for g in good]), matrix([b.point for b in bad])
        kept, kept_at, reverted, reverted_at = self.window.by_verdict(self.state.observed)
        start_at = matrix([start.point])
        return (kept + [start],
                reverted or [start],
                start_at if kept_at is None else np.concatenate([kept_at, start_at]),
                start_at if reverted_at is None else reverted_at)

    def _model(self, best: dict[str, Any]) -> dict[str, Any]:
        """TPE: draw near the good versions, propose the draw most likely good. (The draws
        are written out by hand, not with choices() and Space.value per value: this runs in
        a quarter of the proposals, and was a tenth of a millisecond round; the random
        numbers drawn, and so the proposals, are the same.)"""
        space, rng = self.space, self.rng
        good, bad, goods_at, bads_at = self._split(best)
        # Bandwidths shrink as evidence grows (Scott's rule on the unit interval).
        h_good = max(0.06, 0.4 * len(good) ** -0.2 * (self.state.sigma / SIGMA0) ** 0.5)
        h_bad = max(0.06, 0.4 * len(bad) ** -0.2)
        # The best counts twice (cumulative weights, drawn from as choices() would).
        cum_weights = [float(i) for i in range(1, len(good))] + [len(good) + 1.0]
        total, last = cum_weights[-1], len(good) - 1
        prior = 1 / (len(good) + 1)  # the uniform prior's share
        random_, gauss, value_at = rng.random, rng.gauss, space.value_at
        numeric = [(name, space.column.get(name), space.params[name].values or [])
                   for name in space.names]
        draws, units = [], []
        for _ in range(MODEL_DRAWS):
            centre = good[bisect(cum_weights, random_() * total, 0, last)]
            values, at = {}, []
            for name, column, choices in numeric:
                if column is None:
                    values[name] = centre.values[name] if random_() < 0.7 else rng.choice(
                        choices)
                    continue
                if random_() < prior:
                    values[name], u = value_at(name, random_())
                else:
                    values[name], u = value_at(name, reflect(centre.point[column]
                                                             + gauss(0, h_good)))
                at.append(u)
            draws.append(values)
            units.append(at)

        # Each draw's log density ratio, good against bad, summed over the parameters
        # (numeric ones as one array operation over all draws; choices by counts).
        ratio = np.zeros(len(draws))
        units_at = matrix(units)
        index = 0
        for name, column, choices in numeric:
            if column is not None:
                us = units_at[:, index]
                index += 1
                ratio += np.log(parzen_many(us, goods_at[:, column], h_good)
                                / parzen_many(us, bads_at[:, column], h_bad))
            else:
                k = len(choices)
                goods_l = [g.values[name] for g in good]
                bads_l = [b.values[name] for b in bad]
                ratio += [math.log((goods_l.count(d[name]) + 1) / (len(goods_l) + k)
                                   * (len(bads_l) + k) / (bads_l.count(d[name]) + 1))
                          for d in draws]
        key, tried, ratios = space.key, self.tried, ratio.tolist()
        fresh = [i for i, d in enumerate(draws) if key(d) not in tried] or range(len(draws))
        return draws[max(fresh, key=ratios.__getitem__)]

    def _untried(self, best: dict[str, Any]) -> dict[str, Any] | None:
        """On a small discrete space: the untried combination nearest the best."""
        size = self.space.size
        if size is not None and self.exhausted():
            return None
        if size is None or size > TRIED_MAX:  # (a float's range can hold few values too)
            for _ in range(4 * WIDE_DRAWS):
                values = self._wide(best)
                if self.space.key(values) not in self.tried:
                    return values
            return None
        import itertools

        axes = []
        for name in self.space.names:
            p = self.space.params[name]
            axes.append(list(p.values or []) if p.type == "choice" else list(
                range(math.ceil(p.min), math.floor(p.max) + 1)))  # type: ignore[arg-type]
        untried = [dict(zip(self.space.names, combo, strict=True))
                   for combo in itertools.product(*axes) if combo not in self.tried]
        if not untried:
            return None
        return min(untried, key=lambda v: self._distance(v, best))

    # ---------------------------------------------------------------- learning

    def observe(self, values: dict[str, Any], move: str, score: float,
                soft: float | None) -> None:
        """A decided candidate's score and soft score. One that ranks above every version
        seen without beating the best's score (a tie that came nearer) advanced the search
        as a keep does: its move and a wider step are credited (a keep was, in feedback)."""
        top = self.ranks.top()
        rank = self.ranks.add(self.space.key(values), score, soft)
        if top is None or rank[:2] <= top[1][:2] or self.best_rank is None or (
                rank[0] > self.best_rank[0]) or soft is None:
            return
        st = self.state
        st.stall = 0
        if move in st.tries:
            st.wins[move] += 1
        if move == "local":
            st.sigma = min(st.sigma * GROW / SHRINK, SIGMA_MAX)  # (its revert shrank it)

    def feedback(self, values: dict[str, Any], move: str, kept: bool) -> None:
        st = self.state
        wins, tries = st.wins, st.tries
        for m in MOVES:  # older evidence counts less
            won, tried = PRIOR[m]
            wins[m] = won + (wins[m] - won) * DECAY
            tries[m] = tried + (tries[m] - tried) * DECAY
        if move in st.tries:
            st.tries[move] += 1
            st.wins[move] += kept
        if kept:
            st.stall = 0
            if move == "local":
                st.sigma = min(st.sigma * GROW, SIGMA_MAX)
        else:
            st.stall += 1
            if move == "local":
                st.sigma = max(st.sigma * SHRINK, SIGMA_MIN)
            if st.stall % STALL == 0:
                st.sigma = min(max(st.sigma * 2, SIGMA0), SIGMA_MAX)  # a plateau: wider
        st.observed.append(Observation(values, kept, self.space.key(values),
                                       self.space.point(values)))
        if len(st.observed) > 2 * OBSERVED_MAX:  # (trimmed in steps: no shift every round)
            del st.observed[:OBSERVED_MAX]
