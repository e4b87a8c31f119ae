"""The engine's instructions per round on a library, counted by valgrind's callgrind: a
figure that does not move with a noisy machine, for changes too small for bench/library.py's
CPU times to show (these VMs' timings drift by 2× within a day).

Each library (RUNS files of one `each:` spec, evaluations that take no time, `max_rounds`)
is hosted in a child process under callgrind with instrumentation switched on only around
the measured host (imports and a warm-up library are left out). Counts user-space
instructions of the engine process only: not the kernel's work, not the evaluations'.

    python bench/library_instructions.py                 # 1 run × 100 rounds, 50 × 8
    python bench/library_instructions.py --libraries 200x4

Needs valgrind (`apt-get install valgrind`); each library takes a minute or two.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(runs: int, rounds: int) -> None:
    """Host a warm-up library, then the measured one with instrumentation on."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import library

    from engine.cli import run_headless

    random.Random.uniform = lambda self, a, b: 0.0  # every evaluation's delay: none

    def spec_for(folder: Path, n: int, m: int) -> Path:
        spec = library.make(folder / "library", n, 1)
        text = re.sub(r"stop: \{max_minutes: [0-9.]+\}", f"stop: {{max_rounds: {m}}}",
                      spec.read_text())
        spec.write_text(text)
        return spec

    def switch(on: str) -> None:
        subprocess.run(["callgrind_control", "-i", on, str(os.getpid())],
                       capture_output=True, check=False)

    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        warm = spec_for(Path(tmp) / "warm", 2, 5)
        asyncio.run(run_headless(Path(tmp) / "warm.db", [str(warm)], out=io.StringIO()))
        spec = spec_for(Path(tmp) / "measured", runs, rounds)
        db = Path(tmp) / "measured.db"
        switch("on")
        asyncio.run(run_headless(db, [str(spec)], out=io.StringIO()))
        switch("off")
        n = sqlite3.connect(db).execute(
            "select count(*) from experiments where kind != 'baseline'").fetchone()[0]
    print(f"EXPERIMENTS {n}", file=sys.stderr)


def measure(runs: int, rounds: int) -> tuple[int, int]:
    """(instructions, rounds) of one library."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/out.%p", sys.executable, __file__,
             "--child", str(runs), str(rounds)],
            capture_output=True, text=True, check=False)
    collected = re.search(r"Collected : (\d+)", done.stderr)
    made = re.search(r"EXPERIMENTS (\d+)", done.stderr)
    if done.returncode != 0 or not collected or not made:
        raise SystemExit(f"library_instructions: {runs}×{rounds} failed: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return int(collected[1]), int(made[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--libraries", nargs="*", default=["1x100", "50x8"],
                        help="RUNSxROUNDS each (default: 1x100 50x8)")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("library_instructions: needs valgrind (apt-get install valgrind)")
    first = None
    for item in args.libraries:
        runs, rounds = (int(x) for x in item.split("x"))
        instructions, made = measure(runs, rounds)
        per_round = instructions / max(made, 1)
        first = first or per_round
        print(f"{runs:4d} runs × {rounds:3d} rounds: {made} rounds · "
              f"{per_round / 1e6:.2f} M instructions a round ({per_round / first:.2f}× the "
              f"first library)", flush=True)


if __name__ == "__main__":
    main()
