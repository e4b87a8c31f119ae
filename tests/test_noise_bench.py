"""The noise benchmark runs as a user runs it and prints, per rule, rates and ratios against
`greater` measured in the same run."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO


def test_benchmark_prints_false_and_true_keep_rates_with_ratios_against_greater():
    out = subprocess.run([sys.executable, "bench/noise.py", "--runs", "12", "--rounds", "20"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=True).stdout
    tables = out.split("\n\n")
    metric = next(t for t in tables if t.startswith("metric:"))
    checklist = next(t for t in tables if t.startswith("checklist:"))
    for table in (metric, checklist):
        rows = {}
        for line in table.splitlines()[2:]:
            found = re.match(r"(\S.*?)\s{2,}([\d.]+)%\s+([\d.]+)%\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)",
                             line)
            if found:
                rows[found[1]] = [float(v) for v in found.groups()[1:]]
        assert set(rows) >= {"greater (autoresearch)", "margin, 3 repeats", "paired, 3 repeats",
                             "margin, 3 rep, confirm, reeval 5", "paired, 3 rep, confirm, reeval 5"}
        greater = rows["greater (autoresearch)"]
        assert greater[2] == 1.0 and greater[4] == 1.0  # the baseline of every ratio
        assert greater[0] > 5  # the original rule keeps noise
        for label in ("margin, 3 rep, confirm, reeval 5", "paired, 3 rep, confirm, reeval 5"):
            assert rows[label][0] <= 5, (label, rows[label])  # false keeps
            assert rows[label][4] > 1  # ...paid for with evaluations
    assert "target (false-keep ≤ 5% and true-keep ≥ 0.80 × greater" in out
