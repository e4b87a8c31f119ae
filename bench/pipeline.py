"""Proposals ahead of the slots (engine/stream.py): how busy the worker slots are, and
experiments per hour, against today's serial loop (`ahead: 0`), both measured in this run.

A stand-in model takes L seconds to propose (an in-process mutator that awaits L seconds,
as a model call does, then sets one of eight numbers in the target file at random); an
evaluation takes E seconds (a real command that sleeps, then prints their sum as the loss;
the baseline's are low, so about one candidate in twenty is kept, as in a real run); S
slots. A proposal made ahead that a keep overtakes is carried over when it edits another
line (engine/rebase.py), else abandoned and made again. A slot is busy from the moment the
engine hands it an evaluation until it gets the slot back (staging, the command's start-up
and its E seconds); the command's own span is printed too. Targets: the busy fraction >= 0.95
when L <= E, and >= 1.8x the serial loop's experiments per hour at L = E. The last rows'
evaluations vary (~E: uniform from half of E to 1.5 times), as a real run's do: each
candidate is decided as it lands and its slot refilled at once, so no slot waits for the
slowest of a wave (engine/waves.py).

    python bench/pipeline.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine.loop  # noqa: E402
from engine.host import Host  # noqa: E402
from engine.model import Mutation, Proposal  # noqa: E402
from engine.spec import load_spec  # noqa: E402
from engine.store import Store  # noqa: E402

#: The baseline's numbers; a candidate's new one is uniform in [0, 1): P(keep) about this.
BASELINE = 0.05
LINES = 8
#: bash: its clock needs no process of its own, so the logged span is the evaluation's and
#: the time around it is the engine's (and the machine's).
EVALUATE = ('s=$EPOCHREALTIME; sleep {E}; echo "$s $EPOCHREALTIME" >> {log}; '
            "awk '{{t += $3}} END {{print \"METRIC loss=\" t}}' x.txt")
#: Evaluations that vary (a real run's do): E × uniform(0.5, 1.5), from bash's $RANDOM.
VARIED = "$(awk -v r=$RANDOM 'BEGIN {{print {E} * (0.5 + r / 32767)}}')"


class StandIn:
    """A mutator whose proposals take L seconds (a model's latency), reading the history."""

    def __init__(self, latency: float, seed: int) -> None:
        self.latency = latency
        self.rng = random.Random(seed)

    async def propose(self, proposal: Proposal) -> Mutation:
        await asyncio.sleep(self.latency)
        lines = proposal.best_files["x.txt"].splitlines()
        n, x = self.rng.randrange(len(lines)), self.rng.random()
        lines[n] = f"x{n} = {x}"
        return Mutation(f"x{n} = {x:.4f}", {"x.txt": "\n".join(lines) + "\n"})

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        pass


async def measure(root: Path, L: float, E: float, slots: int, rounds: int, ahead: int | None,
                  varied: bool = False) -> tuple[float, float, float, int]:
    """(busy fraction of the slots, fraction of slot time the commands ran, experiments per
    hour, keeps) for one configuration (`varied`: evaluations take E on average)."""
    name = f"p{abs(hash((L, E, slots, ahead, varied))) % 10**6}"
    ws = root / name
    ws.mkdir()
    # (named lines, as a real file's are: a change to one carries over a keep of another)
    (ws / "x.txt").write_text("".join(f"x{n} = {BASELINE}\n" for n in range(LINES)))
    log = root / f"{name}.times"
    evaluate = root / f"{name}.evaluate.sh"
    evaluate.write_text(EVALUATE.format(E=VARIED.format(E=E) if varied else E, log=log) + "\n")
    spec = root / f"{name}.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: {name}
        target: {{workspace: {name}, files: [x.txt]}}
        mutator: {{kind: agent, command: "true"}}
        evaluate:
          kind: metric
          command: "bash {evaluate}"
          metric: loss
        workers: [{{kind: local, slots: {slots}}}]
        parallel: {slots}
        stop: {{max_rounds: {rounds}, max_failures: null}}
    """) + ("" if ahead is None else f"ahead: {ahead}\n"))
    host = Host(Store(root / f"{name}.db"))
    # The stand-in replaces the spec's mutator (the loop builds it through this factory).
    engine.loop.build_mutator = lambda spec, *how: StandIn(L, seed=slots)
    loop = host.add(load_spec(spec))
    held: list[tuple[str, str, float]] = []
    told = loop.pool.on_change
    assert told is not None

    def seen(state, change: str) -> None:  # (a slot taken or given back)
        if change in ("busy", "idle"):
            held.append((state.name, change, time.perf_counter()))
        told(state, change)

    loop.pool.on_change = seen
    await host.run_until_done()
    kept = sum(e["verdict"] == "kept" for e in host.store.experiments(loop.run_id))
    lines = log.read_text().splitlines()[1:]  # (the baseline's first)
    spans = [(float(a), float(b)) for a, b in (line.split() for line in lines)]
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    running = sum(e - s for s, e in spans) / (slots * (last - first))
    per_hour = len(spans) / (last - first) * 3600
    # Slot time, from the first candidate's evaluation on (the baseline's is the first).
    taken: dict[str, float] = {}
    periods: list[tuple[float, float]] = []
    for slot, change, at in held:
        if change == "busy":
            taken[slot] = at
        elif slot in taken:
            periods.append((taken.pop(slot), at))
    periods = periods[1:]
    start, end = periods[0][0], max(b for _, b in periods)
    busy = sum(b - a for a, b in periods) / (slots * (end - start))
    return busy, running, per_hour, kept


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"{'L s':>5} {'E s':>5} {'slots':>5}  {'busy ahead':>10} {'(running)':>9} "
              f"{'busy serial':>11}  {'exp/h ahead':>11} {'exp/h serial':>12} {'ratio':>6}  keeps")
        ok = True
        for L, E, slots, varied in ((0.5, 0.5, 1, False), (0.25, 0.5, 1, False),
                                    (0.5, 0.5, 2, False), (0.25, 0.5, 2, True),
                                    (0.5, 0.5, 2, True), (0.5, 0.5, 4, True)):
            started = time.perf_counter()
            busy, running, rate, kept = await measure(root, L, E, slots, rounds * slots, None,
                                                      varied)
            busy0, _, rate0, _ = await measure(root, L, E, slots, rounds * slots, 0, varied)
            ratio = rate / rate0
            shown = f"~{E:.2f}" if varied else f"{E:>5.2f}"
            print(f"{L:>5.2f} {shown:>5} {slots:>5}  {busy:>10.3f} {running:>9.3f} "
                  f"{busy0:>11.3f}  {rate:>11.0f} "
                  f"{rate0:>12.0f} {ratio:>5.2f}x  {kept:>5}   "
                  f"({time.perf_counter() - started:.0f} s)")
            ok &= busy >= 0.95 and (L != E or ratio >= 1.8)
        print("targets (busy >= 0.95 when L <= E; >= 1.8x at L = E):", "met" if ok else "MISSED")
        print("~E: evaluations of E × uniform(0.5, 1.5) seconds; each candidate is decided as "
              "it lands and its slot gets the next one at once")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
