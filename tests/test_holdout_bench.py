"""bench/holdout.py runs, and the alert's false-alarm rate on honest runs stays small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_holdout_bench_prints_catch_and_false_alarm_rates():
    out = subprocess.run([sys.executable, str(ROOT / "bench/holdout.py"), "--runs", "60"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert "caught within 5 rounds" in out
    line = next(x for x in out.splitlines() if "false alarms on honest runs" in x)
    assert float(line.split("runs")[1].split("%")[0]) <= 10
