"""Exports in the formats of the two tools our users come from, read by those tools unchanged.

- `results-tsv`: karpathy/autoresearch's results.tsv, as its program.md defines it and its
  analysis notebook reads it: a header `commit<TAB><metric>\tmemory_gb\tstatus\tdescription`,
  the metric to six decimals (`0.000000` for a crash), memory in GB to one decimal
  (peak_vram_mb / 1024; `0.0` when the script printed no memory), status keep/discard/crash,
  a 7-character commit on every row.
- `pi-jsonl`: pi-autoresearch's `.auto/log.jsonl`: a config header (`type: config`, name,
  metricName, metricUnit, bestDirection) opening a segment, then one object per experiment
  with a numeric `run` counted from 1; a reader skips lines without one.

Only the full tier is written: a screened-out candidate's screen score is on another scale,
and neither tool knows tiers. The mapping of verdicts is one table (`status_word`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from typing import Any

from engine.model import ADVANCING, RUNNING
from engine.store import Store

#: A row with no commit of its own or of any version it was evaluated against (a workspace
#: that is not a git repository): seven characters all the same, so columns still line up.
NO_COMMIT = "0000000"
#: Metric names that are ours, not the script's (kept out of pi's secondary `metrics`).
OWN_METRICS = {"guard_passed", "screen_score"}


def metric_name(run: dict[str, Any]) -> str:
    """The run's metric as its script names it (`score` for checklists and test suites)."""
    try:
        evaluate = json.loads(run["spec_json"] or "{}").get("evaluate", {})
    except ValueError:
        return "score"
    return evaluate.get("metric") or "score"


def status_word(row: dict[str, Any]) -> str:
    """keep (became the best), crash (no score: crashed, timed out, invalid, interrupted),
    checks_failed (the guard failed), else discard; pi adds checks_failed, Karpathy has not."""
    if row["score"] is None:
        return "crash"
    if row["verdict"] in ADVANCING:
        return "keep"
    metrics = json.loads(row["metrics_json"] or "{}")
    if metrics.get("guard_passed") == 0.0:
        return "checks_failed"
    return "discard"


def anchor_rows(store: Store, run: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A run's finished full-tier experiments in order, each with the 7-character commit it
    stands for: its own, else that of the version it was evaluated against (its parent,
    and so on up), else NO_COMMIT."""
    commits: dict[int, str | None] = {}
    parents: dict[int, int | None] = {}
    for row in store.iter_experiments(run["id"]):
        commits[row["id"]], parents[row["id"]] = row["git_commit"], row["parent"]
        if row["verdict"] == RUNNING or row["tier"] == "screen":
            continue
        node: int | None = row["id"]
        seen = 0
        while node is not None and not commits.get(node) and seen < 10_000:
            node, seen = parents.get(node), seen + 1
        sha = commits.get(node) if node is not None else None
        yield {**row, "commit7": (sha or NO_COMMIT)[:7]}


def _one_line(text: str | None) -> str:
    """A cell: tabs and line breaks would split the row (the description is free text)."""
    return " ".join((text or "").split())


def memory_gb(metrics: dict[str, float]) -> float:
    if "peak_vram_mb" in metrics:
        return metrics["peak_vram_mb"] / 1024
    return metrics.get("memory_gb", 0.0)


def export_results_tsv(store: Store, run: dict[str, Any]) -> Iterator[str]:
    yield f"commit\t{metric_name(run)}\tmemory_gb\tstatus\tdescription\n"
    for row in anchor_rows(store, run):
        status = status_word(row)
        status = "discard" if status == "checks_failed" else status
        metrics = json.loads(row["metrics_json"] or "{}")
        value = 0.0 if status == "crash" else row["score"]
        memory = 0.0 if status == "crash" else memory_gb(metrics)
        yield (f"{row['commit7']}\t{value:.6f}\t{memory:.1f}\t{status}\t"
               f"{_one_line(row['description']) or row['kind']}\n")


def metric_unit(name: str) -> str:
    """A unit read off the metric's name (`_ms` ms, `_s`/`_sec` s, `_mb` mb, `_kb` kb,
    `µs`), as pi's dashboard infers one; empty otherwise."""
    for suffix, unit in (("µs", "µs"), ("_ms", "ms"), ("_sec", "s"), ("_s", "s"),
                         ("_kb", "kb"), ("_mb", "mb")):
        if name.endswith(suffix):
            return unit
    return ""


def confidence(baseline: float | None, best: float | None, sd: float | None,
               scores: list[float]) -> float | None:
    """How many noise widths the best keep stands from the baseline: |best − baseline| over
    the run's measured noise sd, or (unmeasured) over the median absolute deviation of the
    scores so far, pi's own estimate; None without enough evidence."""
    if baseline is None or best is None or best == baseline:
        return None
    if not sd:
        if len(scores) < 3:
            return None
        median = statistics.median(scores)
        sd = statistics.median(abs(s - median) for s in scores)
        if not sd:
            return None
    value = abs(best - baseline) / sd
    return value if math.isfinite(value) else None


def export_pi_jsonl(store: Store, run: dict[str, Any]) -> Iterator[str]:
    name = metric_name(run)
    lower = run["direction"] == "minimize"
    yield json.dumps({"type": "config", "name": run["name"], "metricName": name,
                      "metricUnit": metric_unit(name),
                      "bestDirection": "lower" if lower else "higher"}) + "\n"
    noise = json.loads(run["noise_json"] or "{}")
    sd = noise.get("pooled_sd") or noise.get("sd")
    baseline = best = None
    scores: list[float] = []
    for number, row in enumerate(anchor_rows(store, run), start=1):
        status = status_word(row)
        metrics = json.loads(row["metrics_json"] or "{}")
        if row["score"] is not None:
            scores.append(row["score"])
            if baseline is None:
                baseline = row["score"]
            if status == "keep" and (best is None or (row["score"] < best) == lower):
                best = row["score"]
        asi = {k: v for k, v in (
            ("hypothesis", row["description"]), ("rationale", row["rationale"]),
            ("reason", row["reason"]), ("verdict", row["verdict"]),
            ("rollback_reason", row["reason"] if status != "keep" else None),
            ("experiment", row["id"]), ("round", row["round"])) if v not in (None, "")}
        timestamp = row["finished"] or row["started"]
        yield json.dumps({
            "run": number, "commit": row["commit7"],
            "metric": 0 if row["score"] is None else row["score"],
            "metrics": {k: v for k, v in metrics.items() if k != name and k not in OWN_METRICS},
            "status": status, "description": row["description"] or row["kind"],
            "timestamp": int(round(timestamp * 1000)), "segment": 0,
            "confidence": confidence(baseline, best, sd, scores), "asi": asi,
        }) + "\n"
