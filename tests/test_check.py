"""`check` catches the mistakes that would otherwise burn rounds, each at its own line; and a
crash says what the command itself said."""

from __future__ import annotations

import contextlib
import io
import json

from tests.conftest import metric_spec, run_cli, write
from tui.cli import main


def check(spec) -> tuple[int, str]:
    """`autoresearch-tui check SPEC` through the CLI's own edge, in this process (fast)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["check", str(spec)])
    return code, err.getvalue().strip()


def test_a_command_that_does_not_exist_is_caught_at_its_line(params_workspace):
    spec = metric_spec(params_workspace, command="pyhton score.py")
    code, err = check(spec)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"autoresearch-tui: {spec}:15: evaluate.command: command `pyhton` is "
                          "not found on PATH or in the workspace; did you mean `python")


def test_commands_that_exist_pass_in_every_shape(params_workspace):
    write(params_workspace / "run.sh", "python score.py\n")
    for command in ["python score.py", "CUDA_VISIBLE_DEVICES=0 python score.py",
                    "sh run.sh", "./run.sh", "cd . && python score.py", "$PY score.py",
                    "'python' score.py", "time python score.py"]:
        code, err = check(metric_spec(params_workspace, command=f'"{command}"'))
        assert code == 0, (command, err)


def test_a_missing_script_path_is_caught(params_workspace):
    code, err = check(metric_spec(params_workspace, command="./train.sh --fast"))
    assert code == 2 and "evaluate.command: `./train.sh` does not exist" in err


def test_a_parameter_not_in_the_config_file_is_caught_at_its_line(params_workspace):
    spec = metric_spec(params_workspace)
    spec.write_text(spec.read_text().replace(
        "    y: {type: choice", "    depth: {type: int, min: 1, max: 4}\n    y: {type: choice"))
    code, err = check(spec)
    assert code == 2
    assert err == (f"autoresearch-tui: {spec}:12: mutator.params.depth: no parameter `depth` "
                   "in params.yaml")


def test_a_crash_message_ends_with_what_the_command_said(tmp_path, params_workspace):
    spec = metric_spec(params_workspace, command="pyhton score.py", stop="max_rounds: 2")
    db = tmp_path / "a.db"
    result = run_cli("--db", str(db), "run", str(spec), "--headless")
    assert result.returncode == 1
    run = json.loads(run_cli("--db", str(db), "status", "--json").stdout)[0]
    assert run["status"] == "failed"
    assert "(exit 127): " in run["stop_reason"] and "pyhton: not found" in run["stop_reason"]
