"""checklists/karpathy.yaml end to end, as shipped: the CPU stand-in train.py, a scripted
coding agent in place of `claude -p`, the real CLI; then the results.tsv it exports read the
way Karpathy's analysis notebook reads it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.store import Store
from tests.conftest import REPO, cli_env, run_cli, write

pd = pytest.importorskip("pandas")

#: The agent: one scripted idea per round, in order; it keeps the prompts it was given.
AGENT = """
    import os, pathlib
    state = pathlib.Path(os.environ["AGENT_STATE"])
    n = len(list(state.glob("prompt-*.txt"))) + 1
    (state / f"prompt-{n}.txt").write_text(pathlib.Path(os.environ["AUTORESEARCH_PROMPT"]).read_text())
    train = pathlib.Path("train.py")
    src = train.read_text()
    if n == 1:
        src, desc = src.replace("LEARNING_RATE = 0.01", "LEARNING_RATE = 0.05"), "raise LR to 0.05"
    elif n == 2:
        pathlib.Path("prepare.py").write_text("TIME_BUDGET = 1e9\\n")
        desc = "give training more time"
    elif n == 3:
        src = src.replace("val_bpb = evaluate_bpb(logprobs)", "raise SystemExit('CUDA out of memory')")
        desc = "double the model width"
    else:
        src, desc = src.replace("EMBED_DIM = 16", "EMBED_DIM = 24"), "wider byte embedding"
    train.write_text(src)
    pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION"]).write_text(desc)
    print("RATIONALE: scripted idea", n)
"""


def test_karpathys_loop_runs_from_the_shipped_spec(tmp_path: Path):
    shutil.copy(REPO / "checklists" / "karpathy.yaml", tmp_path / "karpathy.yaml")
    shutil.copytree(REPO / "checklists" / "karpathy", tmp_path / "karpathy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = tmp_path / "karpathy.yaml"
    spec.write_text(spec.read_text().replace("max_rounds: 100", "max_rounds: 4"))
    ws = tmp_path / "karpathy"
    subprocess.run("git init -q -b main && git add -A && git -c user.name=t -c user.email=t@t "
                   "commit -qm start", shell=True, cwd=ws, check=True)
    state = tmp_path / "agent"
    state.mkdir()
    agent = write(tmp_path / "agent.py", AGENT)
    env = cli_env(AUTORESEARCH_AGENT=f"{sys.executable} {agent}",
                  AUTORESEARCH_TRAIN=f"{sys.executable} train.py", TIME_BUDGET="0.3",
                  AGENT_STATE=str(state), OMP_NUM_THREADS="1")
    db = tmp_path / "autoresearch.db"
    check = run_cli("check", str(spec), env=env)
    assert check.returncode == 0, check.stderr
    assert "target.ignore adds to the default list" in check.stdout
    res = run_cli("--db", str(db), "run", str(spec), "--headless", env=env, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]

    store = Store(db, readonly=True)
    rows = list(store.iter_experiments(store.get_run("karpathy")["id"]))
    assert [r["verdict"] for r in rows][:1] == ["baseline"]
    by_round = {r["round"]: r for r in rows}
    assert by_round[2]["verdict"] == "invalid" and "prepare.py" in by_round[2]["reason"]
    assert by_round[3]["verdict"] == "crashed" and "no `val_bpb` metric" in by_round[3]["reason"]
    base = json.loads(by_round[0]["metrics_json"])
    assert set(base) >= {"val_bpb", "training_seconds", "total_seconds", "peak_vram_mb",
                         "mfu_percent", "total_tokens_M", "num_steps", "num_params_M", "depth"}
    assert base["val_bpb"] == by_round[0]["score"] and base["depth"] == 1
    assert (ws / "prepare.py").read_text().startswith('"""A CPU-sized stand-in')  # untouched

    # The agent's later prompts carry what was already tried, and the metric by name.
    last = (state / "prompt-4.txt").read_text()
    assert "val_bpb" in last and "raise LR to 0.05" in last and "double the model width" in last

    tsv = run_cli("--db", str(db), "export", "karpathy", "--format", "results-tsv", env=env)
    df = pd.read_csv(io.StringIO(tsv.stdout), sep="\t")
    # The notebook reads the file as is; a short hash of digits only (1 in 27) comes back a number.
    commits = pd.read_csv(io.StringIO(tsv.stdout), sep="\t", dtype={"commit": str})["commit"]
    assert list(df.columns) == ["commit", "val_bpb", "memory_gb", "status", "description"]
    df["status"] = df["status"].str.strip().str.upper()
    assert df["status"].tolist()[0] == "KEEP" and df.loc[0, "description"] == "baseline"
    assert df.loc[3, "status"] == "CRASH" and df.loc[3, "val_bpb"] == 0.0
    assert df.loc[0, "memory_gb"] == round(base["peak_vram_mb"] / 1024, 1)
    assert (commits.str.len() == 7).all()
