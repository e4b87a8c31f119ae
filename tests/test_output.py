"""Worker output of any size or kind: recorded, bounded, and the process stays small."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.workers.output import MAX_LINE, TAIL_BYTES, OutputTail
from tests.conftest import REPO, cli_env, metric_spec, run_cli, write


def test_a_gigabyte_of_output_does_not_grow_the_engine(tmp_path, params_workspace):
    write(params_workspace / "flood.sh", """
        yes "a line of output that goes on and on" | head -c 1000000000
        head -c 3000000 /dev/urandom
        echo
        echo "METRIC loss=4"
    """)
    spec = metric_spec(params_workspace, command="sh flood.sh", timeout="120",
                       stop="max_rounds: 1")
    # The engine runs under a small wrapper that reports its own children's peak memory:
    # this process's RUSAGE_CHILDREN would count every earlier test's children too.
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(r.returncode)")
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "tui", "--db",
         str(tmp_path / "a.db"), "run", str(spec), "--headless"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    peak_mb = int(result.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 250, f"a child grew to {peak_mb:.0f} MB"
    rows = [json.loads(line) for line in run_cli(
        "--db", str(tmp_path / "a.db"), "export", "toy", "--format", "jsonl").stdout.splitlines()]
    assert rows[0]["score"] == 4 and rows[0]["verdict"] == "baseline"


def test_output_tail_keeps_the_end_and_streams_a_bounded_number_of_lines():
    seen: list[str] = []
    tail = OutputTail(seen.append)
    for i in range(100_000):
        tail.feed(f"line {i}\n")
    tail.feed("\x00\xff" * 50_000)  # a binary blob with no newline
    tail.feed("\nMETRIC loss=1\n")
    tail.close()
    text = tail.text()
    assert text.endswith("METRIC loss=1")
    assert len(text) <= TAIL_BYTES and tail.truncated
    assert len(seen) <= 2_001 and seen[0] == "line 0"
    assert all(len(line) <= MAX_LINE + 20 for line in seen)
    assert sys.getsizeof(text) < 2 * TAIL_BYTES + 1000
