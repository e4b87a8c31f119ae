"""How throughput scales with parallel slots over SSH.

A real sshd on 127.0.0.1 (from tests/sshd.py) is the "GPU host"; a real run (params
mutator, SQLite store, staging, the SSH worker's upload/run/cleanup) evaluates candidates
whose evaluation is a one-second `sleep` that prints a metric. For 1, 4, 8 and 16 slots
(`parallel` = slots) it measures experiments per second over WAVES waves and prints each as a
ratio to the single slot measured in the same run. Target: at least 0.9 × 16 at 16 slots.

With `--slurm`, the same over a real single-node SLURM cluster (tests/slurm.py, needs root
and scripts/setup-system's packages) behind the sshd as its login node: 1, 4 and 8 slots as
steps of one held allocation, against one slot (target: at least 0.9 × slots); for
reference the same with each step made as its command comes (1 and 8 slots), and bare
`srun` steps from a shell (no engine, no SSH; each wave waits for its slowest step, as the
engine's waves do); then the overhead an evaluation pays for SLURM — an instant evaluation
on one slot, `hold` against `per-job` — printed as a ratio. Each engine run's clock starts at
its first candidate, so the allocation's queue wait (paid during the baseline) is not in it.

    python bench/parallel_scaling.py [--waves 4] [--slots 1 4 8 16] [--slurm]
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


async def measure(lab: SSHLab | None, folder: Path, slots: int, waves: int,
                  slurm: dict | None = None, command: str = EVALUATION) -> tuple[int, float]:
    """(candidate experiments, seconds from the first one's start to the last one's end);
    over SSH, on local slots when `lab` is None, or on SLURM slots (`slurm`: the worker's
    spec entry but for `slots`)."""
    kind = "slurm-" + slurm["allocation"] if slurm else "ssh" if lab else "local"
    name = f"{kind}{slots}"
    ws = folder / f"ws-{name}"
    ws.mkdir(parents=True)
    (ws / "params.yaml").write_text("x: 1.0\ny: 1.0\n")
    (ws / "score.py").write_text("")
    workers = [{**slurm, "slots": slots} if slurm else lab.worker("gpu", slots=slots) if lab
               else {"kind": "local", "slots": slots}]
    spec = make_spec(ws, name, command=command, parallel=slots, workers=workers,
                     params=PARAMS, stop={"max_rounds": slots * waves, "plateau": None})
    loop = await run_loop(spec, folder / f"{name}.db", timeout=600)
    rows = [r for r in loop.store.experiments(loop.run_id) if r["kind"] == "candidate"]
    bad = [r for r in rows if r["score"] is None]
    if bad:
        raise SystemExit(f"{len(bad)} evaluations failed: {bad[0]['reason']}")
    return len(rows), max(r["finished"] for r in rows) - min(r["started"] for r in rows)


def bare_steps(cluster, width: int, waves: int) -> float:
    """Seconds per wave of `width` concurrent `srun` steps of EVALUATION in one allocation."""
    import subprocess
    import time

    env = {**os.environ, **cluster.env}
    job = cluster.run("sbatch", "--parsable", f"--ntasks={width}", "--time=10",
                      "--output=/dev/null", "--wrap", "while :; do sleep 3600; done").strip()
    deadline = time.monotonic() + 60
    while "RUNNING" not in cluster.run("squeue", "-h", "-j", job, "-o", "%T"):
        if time.monotonic() > deadline:
            raise SystemExit("the reference allocation did not start")
        time.sleep(0.05)
    began = time.monotonic()
    for _ in range(waves):
        steps = [subprocess.Popen(["srun", f"--jobid={job}", "--overlap", "--exact", "-n1",
                                   "-N1", "-Q", "sh", "-c", EVALUATION], env=env,
                                  stdout=subprocess.DEVNULL) for _ in range(width)]
        for step in steps:
            step.wait()
    took = (time.monotonic() - began) / waves
    cluster.run("scancel", job)
    return took


async def slurm_rates(lab: SSHLab, folder: Path, worker: dict, waves: int,
                      widths: tuple[int, ...], label: str) -> dict[int, float]:
    """Experiments per second at each width, printed as ratios to the first."""
    rates: dict[int, float] = {}
    for slots in widths:
        count, seconds = await measure(lab, folder / label, slots, waves, slurm=worker)
        rates[slots] = count / seconds
        print(f"{label:>9} {slots:>5} {count:>5} {seconds:>8.2f} {rates[slots]:>7.2f} "
              f"{rates[slots] / rates[widths[0]]:>6.2f} {slots:>6}", flush=True)
    return rates


async def slurm_series(waves: int) -> None:
    """Steps of one held allocation against one slot; then hold against per-job."""
    from engine.workers import slurm
    from tests.slurm import SlurmCluster, why_not

    if why_not():
        raise SystemExit(f"no SLURM series: {why_not()}")
    with tempfile.TemporaryDirectory(prefix="ar-bench-") as tmp, SlurmCluster() as cluster:
        lab = SSHLab(Path(tmp) / "ssh")
        lab.host("login")
        worker = {"kind": "slurm", "host": "login", "ssh_config": str(lab.config),
                  "workdir": str(lab.remote / "login"), "env": cluster.env, "poll_s": 0.2,
                  "time": "30", "allocation": "hold"}
        try:
            # Each run's clock starts at its first candidate: the allocation's queue wait
            # (paid during the baseline) is not in it, as it is not in the bare steps'.
            print(f"{EVALUATION!r} as SLURM steps of one allocation (a local single-node "
                  f"cluster behind a local sshd), {waves} waves; load average "
                  f"{os.getloadavg()[0]:.2f}")
            print(f"{'steps':>9} {'slots':>5} {'exps':>5} {'seconds':>8} {'exp/s':>7} "
                  f"{'ratio':>6} {'ideal':>6}")
            rates = await slurm_rates(lab, Path(tmp), worker, waves, (1, 4, 8), "ahead")
            # The same with each step made as its command comes (how it was done before).
            slurm.SPARE_STEPS = False
            try:
                late = await slurm_rates(lab, Path(tmp), worker, waves, (1, 8), "on demand")
            finally:
                slurm.SPARE_STEPS = True
            for slots in (4, 8):
                ratio = round(rates[slots] / rates[1], 2)  # (judged as printed)
                verdict = "meets" if ratio >= 0.9 * slots else "misses"
                print(f"{slots} steps in one allocation: {ratio:.2f}× one slot — {verdict} the "
                      f"target of {0.9 * slots:.1f}× (0.9 × {slots})")
            # SLURM's own floor at this width: the same steps from a shell, no engine, no
            # SSH, each step made as it is needed and each wave waiting for its slowest.
            one, eight = (bare_steps(cluster, n, waves) for n in (1, 8))
            print(f"for reference, 8 slots = {late[8] / late[1]:.2f}× one with steps made on "
                  f"demand; bare `srun` steps of the same command (no engine, no SSH): "
                  f"8 = {8 * one / eight:.2f}× one (load average now {os.getloadavg()[0]:.2f})")
            # What SLURM adds to an instant evaluation: a step (hold) or a job and a step.
            costs = {}
            for name, allocation, ahead in (("hold", "hold", True), ("on demand", "hold", False),
                                            ("per-job", "per-job", True)):
                slurm.SPARE_STEPS = ahead
                try:
                    count, seconds = await measure(
                        lab, Path(tmp) / f"instant {name}", 1, 3 * waves, command="echo METRIC loss=1",
                        slurm={**worker, "allocation": allocation})
                finally:
                    slurm.SPARE_STEPS = True
                costs[name] = seconds / count
            print(f"per-evaluation time of an instant evaluation: hold {costs['hold']:.3f}s "
                  f"(steps made on demand {costs['on demand']:.3f}s), per-job "
                  f"{costs['per-job']:.3f}s — per-job = {costs['per-job'] / costs['hold']:.2f}× "
                  "hold")
        finally:
            lab.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--slurm", action="store_true",
                        help="the SLURM series instead (a local cluster, needs root)")
    args = parser.parse_args()
    os.environ.pop("SSH_AUTH_SOCK", None)
    if args.slurm:
        await slurm_series(args.waves)
        return
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
