"""Import an existing history into a run's changelog: Karpathy's results.tsv or pi-autoresearch's
.auto/log.jsonl, read the way their own tools read them (engine/anchors.py writes them).

Each line becomes an experiment of kind `imported` (its verdict kept, reverted or crashed;
its score, memory or secondary metrics, commit, description and time), so the mutator's
prompt and the playbook show what was already tried before the first round here. Imported
rows never become the run's best version (their files are not in the store): the run's own
baseline, evaluated on the files as they are now, is. They carry negative round numbers, so
they sort first and count toward no stop rule.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.model import CRASHED, KEPT, REVERTED, UserError
from engine.store import Store

#: The kind of an experiment that came from another tool's history.
IMPORTED = "imported"
VERDICTS = {"keep": KEPT, "discard": REVERTED, "crash": CRASHED, "checks_failed": REVERTED}


@dataclass
class Entry:
    """One experiment of the history, in our words."""

    line: int
    verdict: str
    score: float | None
    description: str
    status: str
    commit: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    timestamp: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    segment: int = 0


@dataclass
class History:
    """A parsed history file: its entries, metric name and direction, where it came from."""

    source: Path
    format: str
    metric: str
    direction: str | None  # None: the file does not say (results.tsv)
    name: str | None
    entries: list[Entry]


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {text!r} is not a finite number")
    return value


def read_results_tsv(path: Path) -> History:
    """Karpathy's results.tsv: header `commit, <metric>, memory_gb, status, description`."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if not rows or not rows[0] or rows[0][0].strip() != "commit" or len(rows[0]) < 4:
        raise UserError(f"{path}:1: not a results.tsv: the header must be "
                        "commit<TAB><metric><TAB>memory_gb<TAB>status<TAB>description")
    header = [h.strip() for h in rows[0]]
    metric = header[1]
    if "status" not in header:
        raise UserError(f"{path}:1: no `status` column in the header")
    col = {name: i for i, name in enumerate(header)}
    entries = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        status = cells.get("status", "").lower()
        if status not in ("keep", "discard", "crash"):
            raise UserError(f"{path}:{n}: status: {cells.get('status', '')!r} is not keep, "
                            "discard or crash")
        score = None if status == "crash" else _number(cells.get(metric, ""), f"{path}:{n}: {metric}")
        metrics = {} if score is None else {metric: score}
        if "memory_gb" in col and status != "crash" and cells.get("memory_gb"):
            metrics["memory_gb"] = _number(cells["memory_gb"], f"{path}:{n}: memory_gb")
        entries.append(Entry(n, VERDICTS[status], score, cells.get("description", ""), status,
                             commit=cells.get("commit") or None, metrics=metrics))
    return History(path, "results.tsv", metric, None, None, entries)


def read_pi_jsonl(path: Path) -> History:
    """pi-autoresearch's log: config headers open segments; a line with a numeric `run` is an
    experiment; anything else is skipped (as pi's own reader does, unknown statuses as keep)."""
    metric, direction, name, segment = "metric", "lower", None, 0
    entries: list[Entry] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        try:
            entry = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "config":
            metric = entry["metricName"] if isinstance(entry.get("metricName"), str) else metric
            name = entry["name"] if isinstance(entry.get("name"), str) else name
            direction = "higher" if entry.get("bestDirection") == "higher" else "lower"
            segment += bool(entries)
            continue
        run = entry.get("run")
        if isinstance(run, bool) or not isinstance(run, int | float):
            continue
        status = entry.get("status") if entry.get("status") in VERDICTS else "keep"
        value = entry.get("metric")
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        score = float(value) if ok and status != "crash" else None
        metrics = {k: float(v) for k, v in (entry.get("metrics") or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)} \
            if isinstance(entry.get("metrics"), dict) else {}
        if score is not None:
            metrics = {metric: score, **metrics}
        stamp = entry.get("timestamp")
        asi = entry.get("asi") if isinstance(entry.get("asi"), dict) else {}
        entries.append(Entry(
            n, VERDICTS[status] if score is not None or status == "crash" else CRASHED, score,
            str(entry.get("description") or ""), status,
            commit=entry["commit"] if isinstance(entry.get("commit"), str) else None,
            metrics=metrics, segment=segment, notes=asi,
            timestamp=stamp / 1000 if isinstance(stamp, int | float) and stamp > 0 else None))
    return History(path, "pi log.jsonl", metric, "minimize" if direction == "lower" else "maximize",
                   name, entries)


def read_history(path: str | Path) -> History:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        if path.suffix == ".jsonl" or path.read_text(encoding="utf-8").lstrip().startswith("{"):
            return read_pi_jsonl(path)
        return read_results_tsv(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not text: {exc}") from None


def import_history(store: Store, history: History, run: dict[str, Any]) -> int:
    """Write the history's entries into the run, before its own experiments; returns how many."""
    source = str(history.source.resolve())
    done = store.conn.execute(
        "SELECT COUNT(*) FROM experiments WHERE run_id = ? AND kind = ? AND "
        "json_extract(decision_json, '$.imported.source') = ?",
        [run["id"], IMPORTED, source]).fetchone()[0]
    if done:
        raise UserError(f"{history.source}: already imported into run {run['name']!r} "
                        f"({done} experiments)")
    if not history.entries:
        raise UserError(f"{history.source}: no experiments in it")
    lower = run["direction"] == "minimize"
    first = store.conn.execute("SELECT MIN(round) FROM experiments WHERE run_id = ?",
                               [run["id"]]).fetchone()[0]
    top = min(first if first is not None else 0, 0)
    rows, best, segment, now = [], None, 0, time.time()
    for k, e in enumerate(history.entries):
        if e.segment != segment:  # a new pi segment has its own baseline
            best, segment = None, e.segment
        delta = None if e.score is None or best is None else e.score - best
        if e.verdict == KEPT and e.score is not None:
            best = e.score if best is None or (e.score < best) == lower else best
        notes = "; ".join(f"{k2}: {v}" for k2, v in e.notes.items() if k2 != "hypothesis")
        rows.append({
            "run_id": run["id"], "round": top - len(history.entries) + k, "kind": IMPORTED,
            "verdict": e.verdict, "score": e.score, "delta": delta,
            "reason": f"imported from {history.format} line {e.line} ({e.status})",
            "description": e.description[:500], "rationale": notes[:4000] or None,
            "metrics_json": json.dumps(e.metrics) if e.metrics else None,
            "git_commit": e.commit, "started": e.timestamp or now, "finished": e.timestamp or now,
            "duration": 0.0, "decision_json": json.dumps({"imported": {
                "source": source, "format": history.format, "line": e.line, "status": e.status,
                "segment": e.segment}}),
        })
    store.bulk_add_experiments(rows)
    return len(rows)


def target_run(store: Store, history: History, run_name: str | None,
               spec_path: str | None) -> dict[str, Any]:
    """The run to import into: the spec's (created as running it would), or one by name (an
    existing run, or a new one with the history's metric and direction)."""
    from engine.host import engine_alive

    spec = None
    if spec_path:
        from engine.spec import MetricEval, load_spec

        spec = load_spec(spec_path)
        if isinstance(spec.evaluate, MetricEval) and spec.evaluate.metric != history.metric:
            raise UserError(f"{history.source}: its metric is {history.metric!r} but "
                            f"{spec_path} scores {spec.evaluate.metric!r}")
    name = spec.name if spec else run_name or history.name
    if not name:
        raise UserError(f"{history.source}: name the run to import into: --run NAME, "
                        "or --spec SPEC")
    if engine_alive(store.path, name):
        raise UserError(f"run {name!r} is running: stop it first (the engine is its one writer)")
    if store.get_run(name) is None:
        if spec is not None:
            store.create_run(name, spec_path=str(spec.path), spec_json=spec.model_dump_json(),
                             workspace=str(spec.workspace), direction=spec.direction,
                             target=spec.target_score)
        else:
            store.create_run(name, spec_path="", workspace="",
                             spec_json=json.dumps({"evaluate": {"metric": history.metric}}),
                             direction=history.direction or "minimize", target=None)
    run = store.get_run(name)
    assert run is not None
    if history.direction and run["direction"] != history.direction:
        raise UserError(f"{history.source}: its best direction is {history.direction} but run "
                        f"{name!r} is {run['direction']}d")
    return run


def cmd_import(db: Path, path: str, run_name: str | None, spec_path: str | None) -> int:
    """`autoresearch-tui import FILE`: one line saying what was imported where."""
    history = read_history(path)
    store = Store(db)
    try:
        run = target_run(store, history, run_name, spec_path)
        count = import_history(store, history, run)
    finally:
        store.close()
    kept = sum(e.verdict == KEPT for e in history.entries)
    print(f"imported {count} experiments ({kept} kept) from {path} ({history.format}, metric "
          f"{history.metric}) into run {run['name']!r} in {db}")
    return 0
