"""How throughput scales with parallel slots over SSH.

A real sshd on 127.0.0.1 (from tests/sshd.py) is the "GPU host"; a real run (params
mutator, SQLite store, staging, the SSH worker's upload/run/cleanup) evaluates candidates
whose evaluation is a one-second `sleep` that prints a metric. For 1, 4, 8 and 16 slots
(`parallel` = slots) it measures experiments per second over WAVES waves and prints each as a
ratio to the single slot measured in the same run. Target: at least 0.9 × 16 at 16 slots.

    python bench/parallel_scaling.py [--waves 4] [--slots 1 4 8 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sshd import SSHLab, make_spec, run_loop  # noqa: E402

EVALUATION = "sleep 1; echo METRIC loss=1"
#: Wide continuous parameters, so the mutator never runs out of new values.
PARAMS = {name: {"type": "float", "min": 0.0, "max": 1e6} for name in ("x", "y")}


async def measure(lab: SSHLab | None, folder: Path, slots: int,
                  waves: int) -> tuple[int, float]:
    """(candidate experiments, seconds from the first one's start to the last one's end);
    over SSH, or on local slots when `lab` is None."""
    name = f"{'ssh' if lab else 'local'}{slots}"
    ws = folder / f"ws-{name}"
    ws.mkdir(parents=True)
    (ws / "params.yaml").write_text("x: 1.0\ny: 1.0\n")
    (ws / "score.py").write_text("")
    workers = [lab.worker("gpu", slots=slots) if lab else {"kind": "local", "slots": slots}]
    spec = make_spec(ws, name, command=EVALUATION, parallel=slots, workers=workers,
                     params=PARAMS, stop={"max_rounds": slots * waves, "plateau": None})
    loop = await run_loop(spec, folder / f"{name}.db", timeout=600)
    rows = [r for r in loop.store.experiments(loop.run_id) if r["kind"] == "candidate"]
    bad = [r for r in rows if r["score"] is None]
    if bad:
        raise SystemExit(f"{len(bad)} evaluations failed: {bad[0]['reason']}")
    return len(rows), max(r["finished"] for r in rows) - min(r["started"] for r in rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args()
    os.environ.pop("SSH_AUTH_SOCK", None)
    with tempfile.TemporaryDirectory(prefix="ar-bench-") as tmp:
        lab = SSHLab(Path(tmp) / "ssh")
        lab.host("gpu")
        try:
            # Other work on the machine moves these figures a lot (the run is CPU-bound).
            print(f"{EVALUATION!r} over SSH to a local sshd, {args.waves} waves per slot count; "
                  f"load average {os.getloadavg()[0]:.2f}")
            print(f"{'slots':>5} {'exps':>5} {'seconds':>8} {'exp/s':>7} {'ratio':>6} {'ideal':>6}")
            base = None
            for slots in args.slots:
                count, seconds = await measure(lab, Path(tmp), slots, args.waves)
                rate = count / seconds
                base = base or rate / slots
                ratio = rate / base
                print(f"{slots:>5} {count:>5} {seconds:>8.2f} {rate:>7.2f} {ratio:>6.2f} "
                      f"{slots:>6}", flush=True)
            top = args.slots[-1]
            verdict = "meets" if ratio >= 0.9 * top else "misses"
            print(f"{top} slots over SSH: {ratio:.2f}× one slot — {verdict} the target of "
                  f"{0.9 * top:.1f}× (0.9 × {top})")
            # The same loop on local slots: what the engine alone costs at this width.
            one = await measure(None, Path(tmp), 1, args.waves)
            many = await measure(None, Path(tmp), top, args.waves)
            local = (many[0] / many[1]) / (one[0] / one[1])
            print(f"for reference, local slots in the same loop: {top} slots = {local:.2f}× one "
                  f"(load average now {os.getloadavg()[0]:.2f})")
        finally:
            lab.close()


if __name__ == "__main__":
    asyncio.run(main())
