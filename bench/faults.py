"""Faults a long run meets: N random SIGKILLs of a fast headless run, and a disk that fills
and frees in the middle of it; then a last engine runs it to the end. Prints how many
evaluations ran, how many are recorded, how many were lost, and what the kills left behind
(processes still running, scratch folders). Target: 0 lost, 0 orphans.

    python bench/faults.py [KILLS]        (root, for the tmpfs that fills; ~1-2 minutes)
    FAULTS_ENGINE=/path/to/checkout python bench/faults.py    (another checkout's engine)

Every evaluation appends its candidate (the params file's one line) to a file outside the
store once it has printed its metric, so an evaluation that ran is matched to its row.
"lost" is an evaluation that ran to its end and left no row at all; "interrupted" one whose
row a kill left unfinished (recorded as interrupted on resume: by design a kill may cost the
outcomes of the last few milliseconds of a fast run, engine/records.py). A kill that lands
while a candidate's row still waits for its batched commit (at most 50 ms, records.py) after
its evaluation of a few milliseconds has run shows as one "lost", named below the figures.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.store import Store  # noqa: E402
from tests.fulldisk import can_mount, full_disk  # noqa: E402

ROUNDS = 600
#: The checkout whose engine is attacked (FAULTS_ENGINE=/path/to/other/checkout compares).
ENGINE = Path(os.environ.get("FAULTS_ENGINE", ROOT))
TOKEN = "BENCH_FAULTS_TOKEN"


def marked(token: str) -> list[int]:
    """Processes whose environment carries this bench's token (evaluations and their kids)."""
    needle = f"{TOKEN}={token}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if needle in Path(f"/proc/{name}/environ").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def scratch_folders(pids: set[int] | None = None) -> set[str]:
    """Scratch folders in the temp folder: the engines' own (`autoresearch-PID-*`, only those of
    `pids` when given: other programs on a shared machine make theirs too) and this run's slot
    copies (`ar-faults-*`)."""
    tmp = Path(tempfile.gettempdir())
    engines = [p for p in tmp.glob("autoresearch-[0-9]*")
               if pids is None or p.name.split("-")[1] in {str(pid) for pid in pids}]
    return {str(p) for p in [*engines, *tmp.glob("ar-faults-*")]}


def setup(root: Path, counter: Path) -> Path:
    ws = root / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text("x: 500.0\n")
    # The metric has a best at x=123: some candidates are kept, most reverted. Every 50th
    # evaluation leaves a child holding its output (it must not outlive the evaluation). The
    # log lines make each record take fresh pages (a full disk shows at once).
    (ws / "score.sh").write_text(textwrap.dedent(f"""\
        x=$(sed -n 's/^x: //p' params.yaml)
        case $x in *7.*) (sleep 30 &) ;; esac
        awk -v x="$x" 'BEGIN {{d = x - 123; if (d < 0) d = -d; printf "%3000s\\n", "log";
                               print "METRIC loss=" d}}'
        cat params.yaml >> {counter}
    """))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "start"]):
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=ws,
                       check=True, capture_output=True)
    spec = root / "faults.yaml"
    spec.write_text(textwrap.dedent(f"""\
        name: faults
        target: {{workspace: ws, files: [params.yaml], protected: [score.sh]}}
        mutator:
          kind: params
          file: params.yaml
          seed: 11
          params: {{x: {{type: float, min: 0, max: 1000}}}}
        evaluate: {{kind: metric, command: sh score.sh, metric: loss, direction: minimize,
                   timeout_s: 20}}
        stop: {{max_rounds: {ROUNDS}, max_failures: null}}
    """))
    return spec


def engine(db: Path, spec: Path, token: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ENGINE), TOKEN: token}
    return subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], env=env, cwd=ENGINE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def rounds_done(db: Path) -> int:
    try:
        store = Store(db, readonly=True)
        try:
            run = store.get_run("faults")
            return run["rounds"] or 0 if run else 0
        finally:
            store.close()
    except (sqlite3.Error, Exception):  # noqa: BLE001 - not made yet
        return 0


def progress(db: Path, beyond: int, timeout: float = 30) -> None:
    """Wait until the run has recorded more than `beyond` rounds."""
    deadline = time.monotonic() + timeout
    while rounds_done(db) <= beyond and time.monotonic() < deadline:
        time.sleep(0.05)


def main(kills: int) -> int:
    if not can_mount():
        print("bench/faults.py needs root (it mounts a small tmpfs that fills up)")
        return 2
    rng = random.Random(2026)
    token = uuid.uuid4().hex
    before = scratch_folders()
    pids: set[int] = set()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        counter = root / "evaluated"
        spec = setup(root, counter)
        with full_disk(root / "disk", size_mb=24) as disk:
            db = disk.mount / "faults.db"
            fill_at = kills // 2
            pauses = tracebacks = 0
            for k in range(kills):
                proc = engine(db, spec, token)
                pids.add(proc.pid)
                progress(db, rounds_done(db))  # (an engine takes a while to start)
                if k == fill_at:  # the disk fills mid-run and frees again, then the kill
                    time.sleep(rng.uniform(0.1, 0.5))
                    disk.fill()
                    time.sleep(3)
                    disk.free()
                    progress(db, rounds_done(db) + 5)
                time.sleep(rng.uniform(0.05, 0.8))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                said = proc.stderr.read()
                proc.stderr.close()
                if k == fill_at:
                    pauses = said.count("cannot write")
                    tracebacks = said.count("Traceback")
            final = engine(db, spec, token)
            pids.add(final.pid)
            try:
                _, err = final.communicate(timeout=240)
                code = final.returncode
            except subprocess.TimeoutExpired:  # e.g. evaluations scored at their timeout
                final.kill()
                _, err = final.communicate()
                code, err = None, "the final engine did not finish within 240 s\n" + err
            time.sleep(0.5)  # the last watchdog's sweep
            orphans = marked(token)
            store = Store(db, readonly=True)
            run = store.get_run("faults")
            rows = store.experiments(run["id"])
            contents = {r["id"]: store.version_files(r["id"]).get("params.yaml", "").strip()
                        for r in rows}
            store.close()
        ran = Counter(line.strip() for line in counter.read_text().splitlines() if line.strip())
    by_content: dict[str, list[dict]] = {}
    for r in rows:
        by_content.setdefault(contents[r["id"]], []).append(r)
    recorded = interrupted = lost = 0
    missing: list[str] = []
    for content, times in ran.items():
        have = by_content.get(content, [])
        finished = [r for r in have if r["verdict"] not in ("interrupted", "running")]
        recorded += min(times, len(finished))
        cut = [r for r in have if r["verdict"] == "interrupted"]
        rest = times - min(times, len(finished))
        interrupted += min(rest, len(cut))
        lost += rest - min(rest, len(cut))
        if rest > len(cut):
            missing.append(f"{content!r} ran {times}x, rows: "
                           + ", ".join(f"#{r['id']} {r['verdict']}" for r in have))
    candidates = [(r["parent"], contents[r["id"]]) for r in rows if r["kind"] == "candidate"]
    repeated = len(candidates) - len(set(candidates))
    left = scratch_folders(pids) - before
    for pid in orphans:  # do not leave them to the machine
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    print(f"full disk: {pauses} pause line(s), {tracebacks} traceback(s) on stderr")
    print(f"kills {kills} + one full disk, final engine exit {code}, "
          f"{time.monotonic() - started:.0f} s, run {run['status']} at round {run['rounds']}")
    print(f"evaluations run {sum(ran.values())}, recorded {recorded}, "
          f"interrupted by a kill {interrupted}, lost {lost}")
    print(f"orphaned processes {len(orphans)}, orphaned folders {len(left)}, "
          f"repeated proposals {repeated}")
    for line in missing[:5]:
        print(f"  lost: {line}")
    for path in sorted(left):
        print(f"  left behind: {path}")
    if code != 0:
        print(err[-2000:])
    return 0 if lost == 0 and not orphans and not left and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
