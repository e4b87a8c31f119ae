"""Library scale: N runs from one `each:` spec in one process, through the headless printer
(`run --headless`), evaluations of 50–300 ms that are mostly waiting (`sleep`).

Prints, for each N: rounds per run (min/median/max: no run starved), the engine's own CPU per
round (this process, not the evaluations' children), RSS, and store bytes per round; then the
CPU per round at the largest N as a ratio against N=1 (target: ≤ 2 ms and flat). First, the
baseline, measured in the same run: the CPU per round of a bare asyncio loop that runs the
same evaluation commands one at a time (each figure is also printed as a ratio to it).

    python bench/library.py                 # 1, 50 and 200 runs, 20 s each
    python bench/library.py --runs 200 --seconds 60
    python bench/library.py --playbook      # the library playbook only

Then the store's bytes per round with reverted versions stored whole and as deltas, and the
library playbook measured against the Messages-API stand-in (tests/library_standin.py: a
model that reads its prompt): rounds to the target of the first runs of a library, and of
runs started after the playbook exists (with it, and with `library: {playbook: false}`).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from engine import retention  # noqa: E402
from engine.cli import run_headless  # noqa: E402
from engine.store import Store  # noqa: E402

#: The rest of a skill file (about 2.4 KB, as a real SKILL.md): what a full copy stores.
#: YAML comments, so the params mutator reads the file still.
BODY = "".join(f"# - step {i}: say what the skill does, for whom, and when to use it\n"
               for i in range(36))
EVAL = ("d=$(awk '/^delay:/{print $2}' {file}); sleep $d; "
        "awk '/^x:/{print \"METRIC loss=\" ($2-7)*($2-7)}' {file}")


def make(root: Path, runs: int, seconds: float, body: str = "",
         max_parallel: int | None = None) -> Path:
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
    """) + (f"library: {{max_parallel: {max_parallel}}}\n" if max_parallel else ""))
    return spec


def sample(db: Path, start: float, out: list, done: threading.Event,
           steer_at: float | None = None, steering: list | None = None) -> None:
    """Every half second: (seconds since start, the engine's CPU, experiments finished).
    At `steer_at` seconds, a steering command (guidance for every run) is written as the
    CLI writes it, and the seconds until the engine applied it go to `steering`."""
    store = None
    command = None
    while not done.wait(0.05 if command else 0.5):
        try:
            store = store or sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            if command is not None:
                if store.execute("select applied from commands where id = ?",
                                 [command[0]]).fetchone()[0] is not None:
                    steering.append(time.monotonic() - command[1])
                    command = None
                continue
            n = store.execute("select count(*) from experiments where verdict != 'running' "
                              "and kind != 'baseline'").fetchone()[0]
        except sqlite3.Error:
            continue
        # The process's CPU less this thread's own (the sampler's queries are not the engine's).
        out.append((time.monotonic() - start, time.process_time() - time.thread_time(), n))
        if steer_at is not None and out[-1][0] >= steer_at and steering is not None \
                and not steering and command is None:
            writer = Store(db)
            command = (writer.add_command(None, "guide", argument="bench"), time.monotonic())
            writer.close()


def measure(runs: int, seconds: float, body: str = "", max_parallel: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-library-") as tmp:
        root = Path(tmp) / "library"
        spec = make(root, runs, seconds, body, max_parallel)
        db = Path(tmp) / "lib.db"  # outside the workspace: candidate copies leave it out
        wall = time.monotonic()
        samples: list[tuple[float, float, int]] = []
        steering: list[float] = []
        done = threading.Event()
        sampler = threading.Thread(target=sample, args=(db, wall, samples, done,
                                                        seconds * 0.6, steering), daemon=True)
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
                "asyncio_warnings": warnings.count("exit status already read"),
                "steering_s": steering[0] if steering else None}


def bare_loop(seconds: float, delays: tuple[float, float] = (0.05, 0.3)) -> float:
    """CPU per round of the least a host could do: one asyncio loop that runs the library's
    evaluation command on one skill file, again and again, and reads its output (a baseline
    measured in the same run: on these VMs a process's wake alone costs 0.1-0.25 ms)."""
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        skill = Path(tmp) / "SKILL.md"
        rng = random.Random(1)
        command = EVAL.replace("{file}", str(skill))

        async def rounds() -> tuple[int, float]:
            began, cpu, n = time.monotonic(), time.process_time(), 0
            while time.monotonic() - began < seconds:
                skill.write_text(f"x: {rng.randint(0, 20)}\ny: 500\n"
                                 f"delay: {rng.uniform(*delays):.3f}\n")
                child = await asyncio.create_subprocess_shell(
                    command, stdout=asyncio.subprocess.PIPE)
                await child.communicate()
                n += 1
            return n, time.process_time() - cpu

        n, cpu = asyncio.run(rounds())
    return 1000 * cpu / max(n, 1)


def playbook_rounds(first: int, later: int, playbook: bool = True) -> tuple[list, list]:
    """Rounds to the target of `first` runs, then of `later` runs added once they are done."""
    import os

    from fake_anthropic import FakeAnthropic
    from library_standin import host_all as host
    from library_standin import library_spec, write_skill

    def rounds(store: Store, names: list[str]) -> list[int]:
        out = []
        for name in names:
            run = store.get_run(name)
            hit = [e["round"] for e in store.experiments(run["id"])
                   if e["verdict"] == "kept" and (e["score"] or 0) >= 1.0]
            out.append(hit[0] if hit else 41)  # (never: counted as the round limit + 1)
        return out

    from library_standin import SkillModel

    with FakeAnthropic(SkillModel(seed=7)) as api, \
            tempfile.TemporaryDirectory(prefix="bench-playbook-") as tmp:
        saved = {k: os.environ.get(k) for k in api.env()}
        os.environ.update(api.env())
        try:
            ws = Path(tmp) / "ws"
            names = [f"s{i:02d}" for i in range(first + later)]
            for name in names[:first]:
                write_skill(ws, name)
            spec = library_spec(ws, stop="target: 1.0, streak: 1, max_rounds: 40",
                                library="" if playbook else "library: {playbook: false}")
            db = Path(tmp) / "lib.db"
            store = asyncio.run(host(db, spec))
            early = rounds(store, [f"lib-{n}" for n in names[:first]])
            store.close()
            for name in names[first:]:
                write_skill(ws, name)
            store = asyncio.run(host(db, spec))
            late = rounds(store, [f"lib-{n}" for n in names[first:]])
            store.close()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return early, late


def print_playbook(first: int, later: int) -> None:
    early, late = playbook_rounds(first, later)
    _, control = playbook_rounds(first, later, playbook=False)
    mean = statistics.mean
    print(f"library playbook: rounds to target, first {first} runs mean {mean(early):.1f} "
          f"(min {min(early)} / max {max(early)}); {later} runs started after the playbook "
          f"exists {mean(late):.1f} (min {min(late)} / max {max(late)}): "
          f"{mean(late) / mean(early):.2f}× the first runs' rounds; the same runs without "
          f"the playbook {mean(control):.1f} ({mean(control) / mean(early):.2f}×)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="*", default=[1, 50, 200])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--max-parallel", type=int, default=None,
                        help="library: {max_parallel: N} (the scheduler picks whose round)")
    parser.add_argument("--store-runs", type=int, default=50,
                        help="runs of the store comparison (0: skip it)")
    parser.add_argument("--playbook", action="store_true",
                        help="only the library playbook's rounds to target")
    parser.add_argument("--playbook-runs", type=int, default=8,
                        help="first runs, and as many later ones (0: skip it)")
    args = parser.parse_args()
    if args.playbook:
        print_playbook(args.playbook_runs, args.playbook_runs)
        return
    bare = bare_loop(min(args.seconds, 10))
    awake = bare_loop(min(args.seconds, 10) / 2, (0.0, 0.0))
    print(f"a bare asyncio loop running the same evaluations, one at a time: {bare:.2f} ms "
          "of CPU per round (the baseline: what starting and reading a command costs here); "
          f"with no wait in them {awake:.2f} ms (what sleeping between rounds costs by "
          f"itself: {bare / awake:.2f}×)", flush=True)
    results = []
    for n in args.runs:
        r = measure(n, args.seconds, max_parallel=args.max_parallel)
        results.append(r)
        ratio = r["cpu_ms"] / max(results[0]["cpu_ms"], 1e-9)
        print(f"{r['runs']:>4} runs: {r['rounds']:>6} rounds in {r['wall']:.0f}s · rounds per "
              f"run min {r['min']} / median {r['median']:g} / max {r['max']} · engine CPU "
              f"{r['cpu_ms']:.2f} ms/round ({ratio:.2f}× {results[0]['runs']} run"
              f"{'s' if results[0]['runs'] != 1 else ''}, {r['cpu_ms'] / bare:.2f}× the bare "
              f"loop) · RSS {r['rss_mb']:.0f} MB · store "
              f"{r['bytes']:.0f} B/round · steering applied in "
              + ("-" if r["steering_s"] is None else f"{r['steering_s']:.2f}s")
              + f" · asyncio warnings {r['asyncio_warnings']}",
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
    if args.playbook_runs:
        print_playbook(args.playbook_runs, args.playbook_runs)


if __name__ == "__main__":
    main()
