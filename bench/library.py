"""Library scale: N runs from one `each:` spec in one process, through the headless printer
(`run --headless`), evaluations of 50–300 ms that are mostly waiting (`sleep`).

Prints, for each N: rounds per run (min/median/max: no run starved), the engine's own CPU per
round (this process, not the evaluations' children), RSS, and store bytes per round; then the
CPU per round at the largest N as a ratio against N=1 (target: ≤ 2 ms and flat).

    python bench/library.py                 # 1, 50 and 200 runs, 20 s each
    python bench/library.py --runs 200 --seconds 60

Then the store's bytes per round with reverted versions stored whole and as deltas.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import retention  # noqa: E402
from engine.cli import run_headless  # noqa: E402
from engine.store import Store  # noqa: E402

#: The rest of a skill file (about 2.4 KB, as a real SKILL.md): what a full copy stores.
#: YAML comments, so the params mutator reads the file still.
BODY = "".join(f"# - step {i}: say what the skill does, for whom, and when to use it\n"
               for i in range(36))
EVAL = ("d=$(awk '/^delay:/{print $2}' {file}); sleep $d; "
        "awk '/^x:/{print \"METRIC loss=\" ($2-7)*($2-7)}' {file}")


def make(root: Path, runs: int, seconds: float, body: str = "") -> Path:
    rng = random.Random(runs)
    for i in range(runs):
        skill = root / "skills" / f"s{i:03d}"
        skill.mkdir(parents=True)
        (skill / "SKILL.md").write_text(f"x: {rng.randint(0, 20)}\ny: 500\n"
                                        f"delay: {rng.uniform(0.05, 0.3):.3f}\n" + body)
    spec = root / "lib.yaml"
    spec.write_text(textwrap.dedent(f"""
        name: lib
        target: {{each: "skills/*/SKILL.md"}}
        mutator:
          kind: params
          seed: 1
          params: {{x: {{type: int, min: 0, max: 20}}, y: {{type: int, min: 0, max: 1000}}}}
        evaluate:
          kind: metric
          command: "{EVAL.replace('"', chr(92) + '"')}"
          metric: loss
          direction: minimize
        stop: {{max_minutes: {seconds / 60:.4f}}}
    """))
    return spec


def sample(db: Path, start: float, out: list, done: threading.Event) -> None:
    """Every half second: (seconds since start, this process's CPU, experiments finished)."""
    store = None
    while not done.wait(0.5):
        try:
            store = store or sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            n = store.execute("select count(*) from experiments where verdict != 'running' "
                              "and kind != 'baseline'").fetchone()[0]
        except sqlite3.Error:
            continue
        out.append((time.monotonic() - start, time.process_time(), n))


def measure(runs: int, seconds: float, body: str = "") -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-library-") as tmp:
        root = Path(tmp) / "library"
        spec = make(root, runs, seconds, body)
        db = Path(tmp) / "lib.db"  # outside the workspace: candidate copies leave it out
        wall = time.monotonic()
        samples: list[tuple[float, float, int]] = []
        done = threading.Event()
        sampler = threading.Thread(target=sample, args=(db, wall, samples, done), daemon=True)
        sampler.start()
        err, sys.stderr = sys.stderr, io.StringIO()
        try:
            asyncio.run(run_headless(db, [str(spec)], out=io.StringIO()))
        finally:
            warnings, sys.stderr = sys.stderr.getvalue(), err
            done.set()
            sampler.join()
        after = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - wall
        with sqlite3.connect(db) as con:  # the WAL folded in: bytes the store keeps
            con.execute("pragma wal_checkpoint(truncate)")
        store = Store(db, readonly=True)
        counts = [len([e for e in store.experiments(r["id"]) if e["kind"] != "baseline"])
                  for r in store.runs()]
        store.close()
        size = sum(p.stat().st_size for p in Path(tmp).glob("lib.db*"))
        rounds = sum(counts) or 1
        # Steady state: the slope of CPU against rounds finished, between a third of the way
        # and the end (start-up, baselines and the stop are left out).
        window = [x for x in samples if x[0] >= seconds / 3] or samples
        first, last = window[0], window[-1]
        cpu = (last[1] - first[1]) / max(1, last[2] - first[2]) * rounds
        return {"runs": len(counts), "rounds": rounds, "wall": wall,
                "min": min(counts), "median": statistics.median(counts), "max": max(counts),
                "cpu_ms": 1000 * cpu / rounds, "rss_mb": after.ru_maxrss / 1024,
                "bytes": size / rounds,
                "asyncio_warnings": warnings.count("exit status already read")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--store-runs", type=int, default=50,
                        help="runs of the store comparison (0: skip it)")
    args = parser.parse_args()
    results = []
    for n in args.runs:
        r = measure(n, args.seconds)
        results.append(r)
        print(f"{r['runs']:>4} runs: {r['rounds']:>6} rounds in {r['wall']:.0f}s · rounds per "
              f"run min {r['min']} / median {r['median']:g} / max {r['max']} · engine CPU "
              f"{r['cpu_ms']:.2f} ms/round · RSS {r['rss_mb']:.0f} MB · store "
              f"{r['bytes']:.0f} B/round · asyncio warnings {r['asyncio_warnings']}",
              flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"engine CPU per round at {last['runs']} runs vs {first['runs']}: "
              f"{last['cpu_ms'] / max(first['cpu_ms'], 1e-9):.2f}× (target ≤ 2 ms and flat)")
    if args.store_runs:
        # Bytes per round with every reverted version stored whole (as before) and as a delta
        # against its parent (engine/retention.py), same library, same seconds, skill files
        # of a real size (2.4 KB).
        retention.DELTAS = False
        whole = measure(args.store_runs, args.seconds / 2, BODY)
        retention.DELTAS = True
        delta = measure(args.store_runs, args.seconds / 2, BODY)
        print(f"store bytes per round at {args.store_runs} runs: full copies "
              f"{whole['bytes']:.0f} B, deltas {delta['bytes']:.0f} B "
              f"({delta['bytes'] / whole['bytes']:.2f}×)")


if __name__ == "__main__":
    main()
