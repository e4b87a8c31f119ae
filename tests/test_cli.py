"""The headless command line as a user runs it: real subprocesses, a real store file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from tests.conftest import REPO, cli_env, metric_spec, run_cli, write


def test_run_headless_prints_a_line_per_experiment_and_resumes(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 4")
    db = tmp_path / "a.db"
    first = run_cli("--db", str(db), "run", str(spec), "--headless")
    assert first.returncode == 0, first.stderr
    lines = [line for line in first.stdout.splitlines() if line.startswith("round")]
    assert len(lines) == 5 and "baseline" in lines[0]
    assert "done: max rounds (4) reached" in first.stdout
    spec.write_text(spec.read_text().replace("max_rounds: 4", "max_rounds: 6"))
    second = run_cli("--db", str(db), "run", str(spec), "--headless")
    rounds = [line.split()[1] for line in second.stdout.splitlines() if line.startswith("round")]
    assert rounds == ["5", "6"]


def test_export_formats_and_status_json(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, stop="max_rounds: 5")
    db = tmp_path / "a.db"
    assert run_cli("--db", str(db), "run", str(spec), "--headless").returncode == 0
    md = run_cli("export", "toy", "--format", "md", "--db", str(db)).stdout
    assert md.startswith("# Changelog: toy")
    assert md.count("\n| ") == 1 + 6  # header + baseline + 5 rounds
    tsv = run_cli("--db", str(db), "export", "toy", "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:4] == ["commit", "score", "status", "description"]
    assert len(tsv) == 7 and tsv[1].split("\t")[2] == "baseline"
    jsonl = run_cli("--db", str(db), "export", "toy", "--format", "jsonl").stdout.splitlines()
    records = [json.loads(line) for line in jsonl]
    assert [r["round"] for r in records] == list(range(6))
    assert records[1]["diff"].startswith("--- a/params.yaml")
    out = tmp_path / "log.md"
    assert run_cli("--db", str(db), "export", "toy", "-o", str(out)).returncode == 0
    assert out.read_text() == md
    status = json.loads(run_cli("--db", str(db), "status", "--json").stdout)
    assert status[0]["name"] == "toy" and status[0]["status"] == "done"
    assert status[0]["baseline"] == 9 and status[0]["best"] <= 9
    assert status[0]["rounds"] == 5 and status[0]["engine_alive"] is False
    missing = run_cli("--db", str(db), "export", "nope")
    assert missing.returncode == 2 and "no run named 'nope'" in missing.stderr


def test_status_on_a_missing_store_is_one_line(tmp_path):
    result = run_cli("--db", str(tmp_path / "none.db"), "status")
    assert result.returncode == 2 and "no such store" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_stops_cleanly_after_recording(tmp_path, params_workspace):
    write(params_workspace / "score.py", """
        import time, yaml
        time.sleep(0.3)
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7)}")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 1000")
    db = tmp_path / "a.db"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], env=cli_env(), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    seen = ""
    while time.monotonic() < deadline and seen.count("\n") < 3:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopping after recording" in err
    status = json.loads(run_cli("--db", str(db), "status", "--json").stdout)[0]
    assert status["status"] == "stopped" and status["engine_alive"] is False
    assert "running" not in status["verdicts"]


def test_specs_and_db_in_any_order_and_attach_takes_db():
    from tui.cli import _parser, _split_specs

    assert _split_specs(["--db", "x.db", "a.yaml", "b.yaml"]) == (["a.yaml", "b.yaml"], ["--db", "x.db"])
    assert _split_specs(["a.yaml", "--db", "x.db"]) == (["a.yaml"], ["--db", "x.db"])
    assert _split_specs(["status", "--json"]) == ([], ["status", "--json"])
    args = _parser().parse_args(["attach", "--db", "x.db"])
    assert args.command == "attach" and str(args.db) == "x.db"


def test_attach_to_a_missing_store_is_one_line_not_an_empty_app(tmp_path):
    result = run_cli("attach", "--db", str(tmp_path / "none.db"), timeout=30)
    assert result.returncode == 2
    assert "no such store to attach to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "none.db").exists()
