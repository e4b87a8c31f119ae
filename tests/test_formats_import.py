"""`autoresearch-tui import`: a Karpathy results.tsv or a pi .auto/log.jsonl becomes a run's
changelog, marked imported, carried into the mutator's prompt and the playbook digest."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.export import FORMATS
from engine.playbook import run_digest
from engine.store import Store
from tests.conftest import cli_env, metric_spec, run_cli, write
from tui.cli import main

#: A results.tsv as program.md describes it (tabs; a crash is 0.000000 and 0.0).
RESULTS = (
    "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    "1a2b3c4\t1.002000\t40.1\tkeep\tbaseline\n"
    "2b3c4d5\t0.998500\t40.3\tkeep\tlower the warmup ratio\n"
    "3c4d5e6\t1.010000\t40.0\tdiscard\tswap RMSNorm for LayerNorm\n"
    "4d5e6f7\t0.000000\t0.0\tcrash\ttriple the depth (OOM)\n"
    "5e6f7a8\t0.991000\t41.2\tKEEP\ttie the embeddings\n"
)

#: A pi log: two segments, a malformed line, a line without a run, an unknown status.
PI_LOG = "\n".join(json.dumps(x) if not isinstance(x, str) else x for x in [
    {"type": "config", "name": "speedup", "metricName": "total_ms", "metricUnit": "ms",
     "bestDirection": "lower"},
    {"run": 1, "commit": "aaaaaaa", "metric": 120.5, "metrics": {"compile_ms": 40}, "status": "keep",
     "description": "baseline", "timestamp": 1764500000000, "segment": 0, "confidence": None},
    {"run": 2, "commit": "bbbbbbb", "metric": 99.25, "metrics": {}, "status": "keep",
     "description": "cache the parser", "timestamp": 1764500060000, "segment": 0,
     "confidence": 2.5, "asi": {"hypothesis": "parsing dominates", "next_action_hint": "io"}},
    "{not json",
    {"note": "no run number here"},
    {"run": 3, "commit": "ccccccc", "metric": 130, "status": "discard",
     "description": "async io", "timestamp": 1764500120000,
     "asi": {"rollback_reason": "slower: lock contention"}},
    {"run": 4, "commit": "ddddddd", "metric": 0, "status": "crash", "description": "mmap it"},
    {"type": "config", "name": "speedup", "metricName": "total_ms", "bestDirection": "lower"},
    {"run": 5, "commit": "eeeeeee", "metric": 95, "status": "weird", "description": "new baseline"},
    {"run": 6, "commit": "fffffff", "metric": 97, "status": "checks_failed",
     "description": "skip validation"},
]) + "\n"


def _rows(db: Path, run: str) -> list[dict]:
    store = Store(db, readonly=True)
    return list(store.iter_experiments(store.get_run(run)["id"]))


def test_results_tsv_becomes_a_runs_changelog(tmp_path):
    path = write(tmp_path / "results.tsv", RESULTS)
    db = tmp_path / "a.db"
    res = run_cli("--db", str(db), "import", str(path), "--run", "nanochat")
    assert res.returncode == 0, res.stderr
    assert "imported 5 experiments (3 kept)" in res.stdout
    rows = _rows(db, "nanochat")
    assert [r["kind"] for r in rows] == ["imported"] * 5
    assert [r["verdict"] for r in rows] == ["kept", "kept", "reverted", "crashed", "kept"]
    assert [r["round"] for r in rows] == [-5, -4, -3, -2, -1]
    assert [r["score"] for r in rows] == [1.002, 0.9985, 1.01, None, 0.991]
    assert [r["git_commit"] for r in rows][:2] == ["1a2b3c4", "2b3c4d5"]
    assert rows[1]["delta"] == 0.9985 - 1.002 and rows[4]["delta"] == 0.991 - 0.9985
    assert json.loads(rows[0]["metrics_json"]) == {"val_bpb": 1.002, "memory_gb": 40.1}
    assert rows[3]["reason"] == "imported from results.tsv line 5 (crash)"
    store = Store(db, readonly=True)
    run = store.get_run("nanochat")
    assert run["direction"] == "minimize" and run["best_experiment"] is None
    # Exported again, it reads as the same results.tsv (the statuses lower-cased).
    again = "".join(FORMATS["results-tsv"](store, run))
    assert again == RESULTS.replace("KEEP", "keep")
    # What was tried is in the playbook digest of the run.
    digest = run_digest(store, run)
    assert "lower the warmup ratio" in digest and "swap RMSNorm for LayerNorm" in digest
    again = run_cli("--db", str(db), "import", str(path), "--run", "nanochat")
    assert again.returncode == 2 and "already imported into run 'nanochat'" in again.stderr


def test_pi_log_is_read_as_pi_reads_it(tmp_path):
    path = write(tmp_path / ".auto" / "log.jsonl", PI_LOG)
    db = tmp_path / "a.db"
    res = run_cli("--db", str(db), "import", str(path))  # the run is named by the config
    assert res.returncode == 0, res.stderr
    rows = _rows(db, "speedup")
    assert [r["description"] for r in rows] == ["baseline", "cache the parser", "async io",
                                                "mmap it", "new baseline", "skip validation"]
    assert [r["verdict"] for r in rows] == ["kept", "kept", "reverted", "crashed", "kept",
                                            "reverted"]  # an unknown status is keep, as in pi
    assert rows[3]["score"] is None and rows[1]["started"] == 1764500060.0
    assert json.loads(rows[0]["metrics_json"]) == {"total_ms": 120.5, "compile_ms": 40.0}
    assert "next_action_hint: io" in rows[1]["rationale"]
    assert "rollback_reason: slower" in rows[2]["rationale"]
    assert rows[4]["delta"] is None  # a new segment starts from its own baseline
    assert json.loads(rows[5]["decision_json"])["imported"]["segment"] == 1
    # Exported as pi's log again, pi reads the same runs and statuses back.
    store = Store(db, readonly=True)
    out = [json.loads(x) for x in FORMATS["pi-jsonl"](store, store.get_run("speedup"))]
    assert [e["status"] for e in out[1:]] == ["keep", "keep", "discard", "crash", "keep", "discard"]
    assert [e["commit"] for e in out[1:3]] == ["aaaaaaa", "bbbbbbb"]


def test_bad_input_is_one_line_naming_file_line_and_field(tmp_path, capsys):
    db = str(tmp_path / "a.db")

    def fails(*args: str) -> str:
        assert main(["--db", db, "import", *args]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        return err

    bad = write(tmp_path / "results.tsv", RESULTS.replace("\tdiscard\t", "\tdiscarded\t"))
    assert f"{bad}:4: status: 'discarded' is not keep, discard or crash" in fails(str(bad), "--run", "x")
    bad.write_text(RESULTS.replace("0.998500", "n/a"))
    assert f"{bad}:3: val_bpb: 'n/a' is not a number" in fails(str(bad), "--run", "x")
    assert "not a results.tsv" in fails(str(write(tmp_path / "x.tsv", "a\tb\n")), "--run", "x")
    assert "no such file" in fails(str(tmp_path / "missing.tsv"), "--run", "x")
    bad.write_text(RESULTS)
    assert "--run NAME" in fails(str(bad))
    assert main(["--db", db, "import", str(bad), "--run", "x"]) == 0  # x: made as minimize
    log = write(tmp_path / "log.jsonl", PI_LOG.replace('"lower"', '"higher"'))
    assert "best direction is maximize" in fails(str(log), "--run", "x")


AGENT = """
    import os, pathlib
    pathlib.Path(os.environ["SEEN_PROMPT"]).write_text(
        pathlib.Path(os.environ["AUTORESEARCH_PROMPT"]).read_text())
    pathlib.Path("params.yaml").write_text("x: 6\\ny: b\\n")
    pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION"]).write_text("x to 6")
"""


def test_an_imported_history_reaches_the_mutators_prompt(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 1")
    text = spec.read_text()
    start, end = text.index("mutator:"), text.index("evaluate:")
    agent = write(tmp_path / "agent.py", AGENT)
    spec.write_text(text[:start] + f"mutator: {{kind: agent, command: '{sys.executable} {agent}'}}\n"
                    + text[end:])
    history = write(tmp_path / "results.tsv", RESULTS.replace("val_bpb", "loss"))
    db = tmp_path / "a.db"
    res = run_cli("--db", str(db), "import", str(history), "--spec", str(spec))
    assert res.returncode == 0, res.stderr
    seen = tmp_path / "prompt.txt"
    run = run_cli("--db", str(db), "run", str(spec), "--headless",
                  env=cli_env(SEEN_PROMPT=str(seen)))
    assert run.returncode == 0, run.stderr
    prompt = seen.read_text()
    assert "[imported]" in prompt and "triple the depth (OOM)" in prompt
    assert "tie the embeddings" in prompt
    rows = _rows(db, "toy")
    assert [r["kind"] for r in rows] == ["imported"] * 5 + ["baseline", "candidate"], [(r["round"], r["verdict"], r["reason"]) for r in rows[5:]]
    assert rows[5]["round"] == 0 and rows[6]["round"] == 1  # max_rounds counts only its own
    mismatch = run_cli("--db", str(db), "import", str(write(tmp_path / "r2.tsv", RESULTS)),
                       "--spec", str(spec))
    assert mismatch.returncode == 2 and "its metric is 'val_bpb'" in mismatch.stderr
