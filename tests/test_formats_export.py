"""Exports the anchors' own tools read unchanged: Karpathy's results.tsv (as his analysis
notebook reads it, with pandas) and pi-autoresearch's log.jsonl (as its parser reads it),
checked field by field against a written description of each format; and our own tsv/jsonl
with lossless numbers."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import time
from pathlib import Path

import pytest

from engine.export import FORMATS
from engine.host import Host
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import metric_spec, run_cli, write

pd = pytest.importorskip("pandas")

# ---------------------------------------------------------------- the anchors, described

#: karpathy/autoresearch program.md, "Logging results": a header row and 5 tab-separated
#: columns — short 7-char commit; the metric (named as the script names it, e.g. val_bpb) to
#: six decimals, 0.000000 for crashes; peak memory in GB to .1f (peak_vram_mb / 1024), 0.0 for
#: crashes; status keep, discard or crash; a short description.
KARPATHY = {
    "columns": lambda metric: ["commit", metric, "memory_gb", "status", "description"],
    "commit": re.compile(r"^[0-9a-f]{7}$"),
    "metric": re.compile(r"^-?\d+\.\d{6}$"),
    "memory_gb": re.compile(r"^\d+\.\d$"),
    "status": {"keep", "discard", "crash"},
}
#: pi-autoresearch's log.jsonl: a `{"type": "config", name, metricName, metricUnit,
#: bestDirection: lower|higher}` header opens each segment (counted from 0); every other line
#: with a numeric `run` is an experiment: run (1, 2, ...), commit (7 chars), metric (number),
#: metrics ({name: number}), status keep|discard|crash|checks_failed (anything else reads as
#: keep), description, timestamp (ms since the epoch), segment, confidence (number or null),
#: asi (an object of free-form notes).
PI_STATUS = {"keep", "discard", "crash", "checks_failed"}


def notebook_reads(tsv: str, metric: str) -> dict:
    """The first cells of Karpathy's analysis.ipynb, as written there."""
    df = pd.read_csv(io.StringIO(tsv), sep="\t")
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df["memory_gb"] = pd.to_numeric(df["memory_gb"], errors="coerce")
    df["status"] = df["status"].str.strip().str.upper()
    counts = df["status"].value_counts()
    valid = df[df["status"] != "CRASH"].reset_index(drop=True)
    kept = df[df["status"] == "KEEP"]
    return {"rows": len(df), "keep": int(counts.get("KEEP", 0)),
            "discard": int(counts.get("DISCARD", 0)), "crash": int(counts.get("CRASH", 0)),
            "baseline": valid.loc[0, metric], "best": kept[metric].min(),
            "memory": list(df["memory_gb"])}


def pi_reads(text: str) -> dict:
    """pi-autoresearch's reconstruction of its state from the log, rule by rule."""
    state = {"name": None, "metricName": "metric", "bestDirection": "lower", "segment": 0,
             "results": []}
    segment = 0
    for line in filter(None, text.split("\n")):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "config":
            for key in ("name", "metricName"):
                if isinstance(entry.get(key), str):
                    state[key] = entry[key]
            state["bestDirection"] = "higher" if entry.get("bestDirection") == "higher" else "lower"
            segment += bool(state["results"])
            state["segment"] = segment
            continue
        if not isinstance(entry.get("run"), int | float) or isinstance(entry.get("run"), bool):
            continue
        status = entry.get("status")
        state["results"].append({**entry, "status": status if status in PI_STATUS else "keep",
                                 "segment": segment})
    return state


# ---------------------------------------------------------------- a run to export


KARPATHY_SCORE = """
    import sys, yaml
    p = yaml.safe_load(open("params.yaml"))
    if p["x"] >= 15:
        sys.exit("CUDA out of memory")  # a crash: no summary block
    print("step 00010 (100.0%) | loss: 3.2")
    print("---")
    print(f"val_bpb:          {abs(p['x'] - 7) / 3 + (0 if p['y'] == 'b' else 1.23456789):.6f}")
    print(f"peak_vram_mb:     {45060.2 + 100 * p['x']:.1f}")
    print(f"num_steps:        {953 + p['x']}")
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """One real run (git workspace, seeded params mutator, a crash when x >= 15) exported
    in every format."""
    tmp = tmp_path_factory.mktemp("run")
    ws = tmp / "ws"
    write(ws / "params.yaml", "x: 1\ny: a\n")
    write(ws / "score.py", KARPATHY_SCORE)
    subprocess.run("git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t "
                   "commit -qm start", shell=True, cwd=ws, check=True)
    spec = metric_spec(ws, name="bpb", stop="max_rounds: 14, max_failures: 30")
    spec.write_text(spec.read_text().replace("metric: loss", "metric: val_bpb"))
    db = tmp / "a.db"
    import asyncio

    async def go() -> None:
        store = Store(db)
        host = Host(store)
        host.add(load_spec(spec))
        await host.run_until_done()
        store.close()

    asyncio.run(go())
    store = Store(db, readonly=True)
    run = store.get_run("bpb")
    rows = list(store.iter_experiments(run["id"]))
    out = {fmt: "".join(FORMATS[fmt](store, run)) for fmt in FORMATS}
    return {"db": db, "rows": rows, "run": run, **out}


def test_results_tsv_is_karpathys_format_field_by_field(exported):
    lines = exported["results-tsv"].splitlines()
    assert lines[0].split("\t") == KARPATHY["columns"]("val_bpb")
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == len(exported["rows"])
    verdicts = {"baseline": "keep", "kept": "keep", "reverted": "discard", "crashed": "crash",
                "invalid": "crash"}
    for cells, ours in zip(rows, exported["rows"], strict=True):
        assert len(cells) == 5
        commit, metric, memory, status, description = cells
        assert KARPATHY["commit"].match(commit), commit
        assert KARPATHY["metric"].match(metric) and KARPATHY["memory_gb"].match(memory)
        assert status == verdicts[ours["verdict"]]
        assert description == ours["description"]
        if status == "crash":
            assert (metric, memory) == ("0.000000", "0.0")
        else:
            assert float(metric) == pytest.approx(ours["score"], abs=5e-7)
            vram = json.loads(ours["metrics_json"])["peak_vram_mb"]
            assert memory == f"{vram / 1024:.1f}"
        # The commit: its own if kept, else the version's it was evaluated against.
        own = ours["git_commit"] or next(r["git_commit"] for r in exported["rows"]
                                         if r["id"] == ours["parent"])
        assert commit == own[:7]
    assert {r[3] for r in rows} == {"keep", "discard", "crash"}, "the seeded run covers all three"


def test_karpathys_notebook_reads_the_export(exported):
    seen = notebook_reads(exported["results-tsv"], "val_bpb")
    kept = [r for r in exported["rows"] if r["verdict"] in ("baseline", "kept")]
    assert seen["keep"] == len(kept) and seen["keep"] >= 2
    assert seen["crash"] == sum(r["score"] is None for r in exported["rows"])
    assert seen["rows"] == seen["keep"] + seen["discard"] + seen["crash"]
    assert seen["baseline"] == pytest.approx(exported["run"]["baseline_score"], abs=5e-7)
    assert seen["best"] == pytest.approx(exported["run"]["best_score"], abs=5e-7)
    assert not any(math.isnan(m) for m in seen["memory"])


def test_pi_jsonl_is_pis_log_format_field_by_field(exported):
    lines = exported["pi-jsonl"].splitlines()
    header = json.loads(lines[0])
    assert header == {"type": "config", "name": "bpb", "metricName": "val_bpb",
                      "metricUnit": "", "bestDirection": "lower"}
    now_ms = time.time() * 1000
    entries = [json.loads(line) for line in lines[1:]]
    assert [e["run"] for e in entries] == list(range(1, len(exported["rows"]) + 1))
    words = {"baseline": "keep", "kept": "keep", "reverted": "discard", "crashed": "crash",
             "invalid": "crash"}
    for e, ours in zip(entries, exported["rows"], strict=True):
        assert set(e) == {"run", "commit", "metric", "metrics", "status", "description",
                          "timestamp", "segment", "confidence", "asi"}
        assert isinstance(e["commit"], str) and re.fullmatch(r"[0-9a-f]{7}", e["commit"])
        assert type(e["metric"]) in (int, float)
        assert e["metric"] == (0 if ours["score"] is None else ours["score"])  # lossless
        assert all(type(v) in (int, float) for v in e["metrics"].values())
        assert "val_bpb" not in e["metrics"]  # secondary only
        if ours["score"] is not None:
            assert e["metrics"]["peak_vram_mb"] == json.loads(ours["metrics_json"])["peak_vram_mb"]
        assert e["status"] == words[ours["verdict"]]
        assert e["description"] == ours["description"]
        assert isinstance(e["timestamp"], int) and now_ms - 600_000 < e["timestamp"] <= now_ms
        assert e["segment"] == 0
        assert e["confidence"] is None or (isinstance(e["confidence"], float)
                                           and e["confidence"] > 0)
        assert e["asi"]["verdict"] == ours["verdict"] and e["asi"]["reason"] == ours["reason"]
        if e["status"] != "keep":
            assert e["asi"]["rollback_reason"] == ours["reason"]


def test_pis_parser_reads_every_run_with_its_status(exported):
    state = pi_reads(exported["pi-jsonl"])
    assert state["name"] == "bpb" and state["metricName"] == "val_bpb"
    assert len(state["results"]) == len(exported["rows"])
    keeps = [r for r in state["results"] if r["status"] == "keep"]
    assert len(keeps) == sum(r["verdict"] in ("baseline", "kept") for r in exported["rows"])
    assert min(r["metric"] for r in keeps) == exported["run"]["best_score"]
    # Our own jsonl is not pi's: its reader finds no runs in it (no numeric `run`), rather
    # than misreading it.
    assert pi_reads(exported["jsonl"])["results"] == []


def test_own_tsv_and_jsonl_keep_every_number_exactly(exported):
    rows = list(csv.DictReader(io.StringIO(exported["tsv"]), delimiter="\t"))
    records = [json.loads(line) for line in exported["jsonl"].splitlines()]
    for row, rec, ours in zip(rows, records, exported["rows"], strict=True):
        for column, key in (("score", "score"), ("delta", "delta"), ("duration_s", "duration"),
                            ("cost_usd", "cost_usd")):
            assert (float(row[column]) if row[column] else None) == ours[key]
            assert rec[key] == ours[key]
        assert row["status"] == ours["verdict"] and json.loads(row["metrics"]) == rec["metrics"]
        assert rec["started_iso"].endswith("Z") and row["started"] == rec["started_iso"]


def test_a_guard_failure_is_checks_failed_in_pi_and_discard_for_karpathy(tmp_path):
    store = Store(tmp_path / "a.db")
    run_id = store.create_run("g", spec_path="", spec_json=json.dumps(
        {"evaluate": {"metric": "latency_ms"}}), workspace="", direction="maximize", target=None)
    base = store.start_experiment(run_id, round=0, kind="baseline", parent=None,
                                  description="baseline")
    store.finish_experiment(base, verdict="baseline", score=1234567.891011,
                            metrics={"latency_ms": 1234567.891011})
    cand = store.start_experiment(run_id, round=1, kind="candidate", parent=base,
                                  description="skip\tthe\ncheck")
    store.finish_experiment(cand, verdict="reverted", reason="guard command failed", score=2e6,
                            metrics={"latency_ms": 2e6, "guard_passed": 0.0})
    screened = store.start_experiment(run_id, round=2, kind="candidate", parent=base,
                                      tier="screen", description="screened out")
    store.finish_experiment(screened, verdict="reverted", score=5.0, metrics={"latency_ms": 5.0})
    again = store.start_experiment(run_id, round=2, kind="reeval", parent=base,
                                   description="re-evaluate the best")
    store.finish_experiment(again, verdict="reevaluated", score=1234000.5)
    run = store.get_run(run_id)
    tsv = "".join(FORMATS["results-tsv"](store, run)).splitlines()
    assert len(tsv) == 4 and "screened out" not in "".join(tsv)  # screen scores: another scale
    assert tsv[3] == "0000000\t1234000.500000\t0.0\tdiscard\tre-evaluate the best"
    assert tsv[0] == "commit\tlatency_ms\tmemory_gb\tstatus\tdescription"
    assert tsv[1] == "0000000\t1234567.891011\t0.0\tkeep\tbaseline"  # no git: seven zeros
    assert tsv[2] == "0000000\t2000000.000000\t0.0\tdiscard\tskip the check"
    pi = [json.loads(line) for line in FORMATS["pi-jsonl"](store, run)]
    assert pi[0]["bestDirection"] == "higher" and pi[0]["metricUnit"] == "ms"
    assert pi[2]["status"] == "checks_failed" and pi[2]["metrics"] == {}
    assert pi[1]["metric"] == 1234567.891011
    own = "".join(FORMATS["tsv"](store, run)).splitlines()[1].split("\t")
    assert own[1] == "1234567.891011"  # not 1.23457e+06


def test_the_cli_writes_both_anchor_formats(exported, tmp_path):
    out = tmp_path / "results.tsv"
    res = run_cli("--db", str(exported["db"]), "export", "bpb", "--format", "results-tsv",
                  "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_text() == exported["results-tsv"]
    res = run_cli("--db", str(exported["db"]), "export", "bpb", "--format", "pi-jsonl")
    assert res.stdout == exported["pi-jsonl"]
    bad = run_cli("--db", str(exported["db"]), "export", "bpb", "--format", "csv")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    assert Path(exported["db"]).exists()
