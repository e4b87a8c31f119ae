"""Exports of a run's changelog: `md` to read; `tsv` and `jsonl`, our own full formats (every
number written losslessly: the shortest text that reads back as the same float); and the
anchors' own formats, `results-tsv` and `pi-jsonl` (engine/anchors.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from engine.anchors import export_pi_jsonl, export_results_tsv
from engine.calls import estimated_by_experiment, estimated_note, estimated_usd
from engine.store import Store

#: Columns of the TSV: a results.tsv user's first (commit, score, status, description), then ours.
TSV_COLUMNS = ["commit", "score", "status", "description", "round", "id", "kind", "delta",
               "reason", "worker", "duration_s", "cost_usd", "tokens_in", "tokens_out",
               "parent", "started", "metrics", "cost_estimated_usd"]
JSONL_FIELDS = ["id", "round", "parent", "kind", "verdict", "reason", "description", "rationale",
                "score", "delta", "worker", "tier", "wave", "started", "finished", "duration",
                "tokens_in", "tokens_out", "tokens_cache_write", "tokens_cache_read", "cost_usd",
                "git_commit", "error", "diff"]


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def _cell(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _exact(value: float | int | None) -> str:
    """A number as the shortest text that reads back as the same value (repr), never `.6g`."""
    return "" if value is None else repr(value)


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO-8601 UTC with milliseconds, the form spreadsheets and pandas parse."""
    if ts is None:
        return None
    stamp = datetime.fromtimestamp(ts, tz=UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export_tsv(store: Store, run: dict[str, Any]) -> Iterator[str]:
    yield "\t".join(TSV_COLUMNS) + "\n"
    estimated = estimated_by_experiment(store, run["id"])
    for e in store.iter_experiments(run["id"]):
        row = [(e["git_commit"] or "")[:7], _exact(e["score"]), e["verdict"], e["description"],
               e["round"], e["id"], e["kind"], _exact(e["delta"]), e["reason"], e["worker"],
               _exact(e["duration"]), _exact(e["cost_usd"]), e["tokens_in"], e["tokens_out"],
               e["parent"], iso(e["started"]), e["metrics_json"] or "{}",
               _exact(estimated.get(e["id"], 0.0))]
        yield "\t".join(_cell(v) for v in row) + "\n"


def export_jsonl(store: Store, run: dict[str, Any]) -> Iterator[str]:
    estimated = estimated_by_experiment(store, run["id"])
    for e in store.iter_experiments(run["id"]):
        record = {k: e[k] for k in JSONL_FIELDS}
        # The part of cost_usd that is an upper-bound estimate (engine/calls.py).
        record["cost_estimated_usd"] = estimated.get(e["id"], 0.0)
        record["run"] = run["name"]
        record["started_iso"] = iso(e["started"])
        record["metrics"] = json.loads(e["metrics_json"]) if e["metrics_json"] else {}
        yield json.dumps(record) + "\n"


def export_md(store: Store, run: dict[str, Any]) -> Iterator[str]:
    base, best = run["baseline_score"], run["best_score"]
    yield f"# Changelog: {run['name']}\n\n"
    yield (f"Status **{run['status']}**"
           + (f" ({run['stop_reason']})" if run["stop_reason"] else "")
           + f" · baseline {_fmt(base)} → best {_fmt(best)}"
           + held_out_line(store, run)
           + f" ({run['direction']}) · {run['rounds']} rounds · ${run['cost_usd'] or 0:.4f}"
           + estimated_note(store, run["id"]) + "\n\n")
    yield "| # | round | verdict | score | delta | what was tried | why |\n"
    yield "|---|---|---|---|---|---|---|\n"
    for e in store.iter_experiments(run["id"]):
        delta = "" if e["delta"] is None else f"{e['delta']:+.4g}"
        cells = [str(e["id"]), str(e["round"]), e["verdict"], _fmt(e["score"]), delta,
                 e["description"] or "", e["reason"] or ""]
        yield "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |\n"


def held_out_line(store: Store, run: dict[str, Any]) -> str:
    """` · held out A → B`, or nothing for a run that holds nothing out."""
    from engine.checkpoints import holdout_summary

    held = holdout_summary(store, run["id"])
    if held["holdout_baseline"] is None:
        return ""
    return f" · held out {_fmt(held['holdout_baseline'])} → {_fmt(held['holdout_best'])}"


FORMATS = {"md": export_md, "tsv": export_tsv, "jsonl": export_jsonl,
           "results-tsv": export_results_tsv, "pi-jsonl": export_pi_jsonl}


def status_json(store: Store) -> list[dict[str, Any]]:
    """Every run's state: the stable machine-readable view for scripts and agents."""
    from engine.checkpoints import holdout_summary
    from engine.host import engine_alive

    out = []
    for run in store.runs():
        stats = store.run_stats(run["id"])
        out.append({
            "name": run["name"], "id": run["id"], "status": run["status"],
            "engine_alive": engine_alive(store.path, run["name"]),
            "stop_reason": run["stop_reason"], "direction": run["direction"],
            "waiting": run.get("waiting"),  # why a library's run waits (scheduler.py)
            "rounds": run["rounds"], "experiments": stats["experiments"],
            "verdicts": stats["verdicts"], "baseline": run["baseline_score"],
            "best": run["best_score"], "best_experiment": run["best_experiment"],
            "target": run["target"], "cost_usd": round(run["cost_usd"] or 0, 6),
            # Of it, calls a killed engine left in flight, at their upper bound.
            "cost_estimated_usd": round(estimated_usd(store, run["id"]), 6),
            "elapsed_s": round(run["elapsed"] or 0, 1), "branch": run["branch"],
            "workspace": run["workspace"], **holdout_summary(store, run["id"]),
            # Slots: what each runs (`#12`), waits for (a SLURM queue) and its batch job id.
            "workers": [{k: w[k] or "" for k in ("name", "status", "job", "queue", "job_id",
                                                  "reason")}
                        for w in store.workers(run["id"])],
        })
    return out
