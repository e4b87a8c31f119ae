"""SLURM workers without a cluster: their spec entry (and its mistakes), SLURM's time format,
squeue's and srun's words, slot names; and a SkyPilot-style ssh config (a cluster name as
an SSH `host`, found through `Include`) reaching a real sshd."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import spec as specs
from engine.spec import SpecError, parse_spec
from engine.workers.pool import build_workers
from engine.workers.slurmjobs import (
    Job,
    cluster_fault,
    duration_s,
    parse_final_state,
    parse_job_id,
    parse_squeue,
    sbatch_command,
    step_command,
)
from tests.sshd import SSHLab, make_spec, open_lab, run_loop

PY = sys.executable

BASE = """\
name: s
target: {workspace: ws, files: [a.txt]}
mutator: {kind: params, file: a.txt, params: {x: {type: int, min: 0, max: 3}}}
evaluate: {kind: metric, command: "true", metric: m}
workers:
  - kind: slurm
    host: login
"""


@pytest.mark.parametrize("extra, field, problem", [
    ("    time: 12m\n", "time", "'12m' is not a SLURM time (MINUTES, MM:SS, HH:MM:SS"),
    ("    time: [1]\n", "time", "is not a SLURM time"),
    ("    allocation: forever\n", "allocation", "'hold' or 'per-job'"),
    ("    env: {'BAD NAME': x}\n", "env", "not an environment variable name"),
    ("    slots: 0\n", "slots", "greater than or equal to 1"),
    ("    partiton: gpu\n", "partiton", "unknown key"),
])
def test_a_mistake_in_a_slurm_worker_is_one_line_naming_the_field(
        extra: str, field: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE + extra, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s.yaml:")
    assert field in message and problem in message, message


def test_an_ssh_worker_refuses_a_bad_environment_name_as_a_slurm_worker_does() -> None:
    # The two share their SSH settings (spec.RemoteWorker); SSH did not check its env names,
    # and a name such as `BAD NAME` broke the job script on the host instead.
    with pytest.raises(SpecError) as caught:
        parse_spec(BASE.replace("kind: slurm", "kind: ssh") + "    env: {'BAD NAME': x}\n",
                   "s.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s.yaml:")
    assert "env" in message and "not an environment variable name" in message


def test_the_login_node_gets_every_ssh_setting_of_a_slurm_worker() -> None:
    from engine.workers.slurmcluster import login_config

    spec = parse_spec(BASE + "    identity: /keys/id\n    known_hosts: /keys/known\n"
                      "    heartbeat_s: 3\n    env: {A: b}\n    workdir: /shared\n", "s.yaml")
    (config,) = spec.workers
    login = login_config(config)
    for name in specs.RemoteWorker.model_fields:
        assert getattr(login, name) == getattr(config, name), name
    assert login.workdir == "/shared" and login.launcher == ""


def test_a_slurm_worker_spec_and_its_slots() -> None:
    spec = parse_spec(BASE + "    slots: 3\n    partition: gpu\n    gres: 'gpu:1'\n"
                      "    time: '00:12:00'\n    allocation: per-job\n    group: h100\n"
                      "    sbatch_args: [--qos=high]\n", "s.yaml")
    (config,) = spec.workers
    assert isinstance(config, specs.SlurmWorker) and config.allocation == "per-job"
    workers = build_workers("s", [config, config])
    assert [w.name for w in workers] == ["login:1", "login:2", "login:3",
                                         "login+:1", "login+:2", "login+:3"]
    assert {w.group for w in workers} == {"h100"}
    line = sbatch_command(config, "autoresearch.s", 1)
    assert line.startswith("sbatch --parsable --job-name=autoresearch.s --ntasks=1 "
                           "--no-requeue")
    for part in ("--partition=gpu", "--gres=gpu:1", "--time=00:12:00", "--qos=high",
                 "'--wrap=while :; do sleep 3600; done'"):
        assert part in line


@pytest.mark.parametrize("text, seconds", [
    ("30", 1800), ("5:00", 300), ("59:58", 3598), ("1:00:00", 3600), ("2-12", 216000),
    ("1-00:00:00", 86400), ("1-2:30", 95400), ("UNLIMITED", None), ("INVALID", None),
    ("", None), ("x-1", None), ("1:2:3:4", None),
])
def test_slurm_times_read_as_seconds(text: str, seconds: float | None) -> None:
    assert duration_s(text) == seconds


def test_squeue_sbatch_and_scontrol_answers_are_read() -> None:
    assert parse_job_id("1234\n") == "1234" and parse_job_id("77;cluster") == "77"
    assert parse_job_id("sbatch: error: nope") is None and parse_job_id("") is None
    assert parse_squeue("12|PENDING|Resources|5:00\n13|RUNNING|None|4:59\nnoise\n") == {
        "12": ("PENDING", "Resources", "5:00"), "13": ("RUNNING", "None", "4:59")}
    assert parse_final_state("NODE_FAIL\n") == "NODE_FAIL"
    assert parse_final_state("JobId=3 JobState=CANCELLED Reason=None Dependency=(null)") == \
        "CANCELLED"
    assert parse_final_state("JobId=1 JobState=NODE_FAIL Reason=NodeDown") == \
        "NODE_FAIL (NodeDown)"
    job = Job("5", submitted=100.0)
    job.update("PENDING", "Resources", "5:00")
    assert job.queued(now=234.0) == "queued 2m14s, reason Resources"
    job.update("RUNNING", "None", "4:00")
    assert job.running and job.left_s == 240


@pytest.mark.parametrize("output, fault", [
    ("slurmstepd-ar1: error: *** STEP 2.0 ON ar1 CANCELLED AT 2026-12-01T09:24:01 ***\n",
     "step 2.0 was cancelled"),
    ("slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01T00:00:00 DUE TO PREEMPTION "
     "***", "job 7 was cancelled due to preemption"),
    ("srun: error: Node failure on ar1\n", "Node failure on ar1"),
    ("out\nsrun: error: Slurm job 2 has expired\n", "Slurm job 2 has expired"),
    ("srun: error: Unable to create step for job 9: Job/step already completing or completed",
     "Unable to create step for job 9: Job/step already completing or completed"),
    # The command's own failures are its verdict, not the cluster's fault.
    ("srun: error: ar1: task 0: Exited with exit code 3\n", ""),
    ("Traceback ...\nValueError: bad\n", ""),
    ("echo slurmstepd: error: *** STEP 1.0 ON x CANCELLED AT y ***", ""),
])
def test_srun_saying_the_cluster_ended_a_step_is_told_from_a_failing_command(
        output: str, fault: str) -> None:
    assert cluster_fault(output) == fault


def test_a_step_runs_the_command_in_one_task_of_the_job() -> None:
    config = specs.SlurmWorker(kind="slurm", host="x", srun_args=["--gpus=1"])
    line = step_command("42", "python train.py 'a b'", "MARK ", config)
    assert line.startswith("exec srun --jobid=42 --overlap --exact --ntasks=1 --nodes=1 "
                           "--quiet --gpus=1 sh -c ")
    assert line.endswith("sh 'python train.py '\"'\"'a b'\"'\"''")


# ---------------------------------------------------------------- SkyPilot


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    yield from open_lab(tmp_path, monkeypatch)


async def test_a_skypilot_cluster_name_works_as_an_ssh_host(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    """SkyPilot writes `Host CLUSTER` blocks to ~/.sky/generated/ssh/CLUSTER and adds
    `Include ~/.sky/generated/ssh/*` to ~/.ssh/config; its clusters' host keys are not
    kept (UserKnownHostsFile /dev/null), so the worker trusts the key it is shown."""
    server = lab.host("unused")
    generated = tmp_path / "sky" / "generated" / "ssh"
    generated.mkdir(parents=True)
    (generated / "mycluster").write_text(textwrap.dedent(f"""\
        # Added by sky (use `sky down mycluster` to remove)
        Host mycluster
          HostName 127.0.0.1
          User root
          IdentityFile {lab.keys.identity}
          IdentitiesOnly yes
          ForwardAgent yes
          StrictHostKeyChecking no
          UserKnownHostsFile=/dev/null
          GlobalKnownHostsFile=/dev/null
          Port {server.port}
        """))
    user_config = tmp_path / "ssh_config_user"
    user_config.write_text(f"Include {generated}/*\n")
    spec = make_spec(params_workspace, "sky", command=f"{PY} score.py",
                     workers=[{"kind": "ssh", "host": "mycluster", "ssh_config": str(user_config),
                               "trust_unknown_host": True, "workdir": str(tmp_path / "remote"),
                               "connect_timeout_s": 5}],
                     stop={"max_rounds": 1})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    assert rows[0]["worker"] == "mycluster:1" and rows[0]["score"] is not None


def test_two_partitions_make_a_screening_tier_and_a_promotion_tier() -> None:
    text = BASE.replace("workers:\n  - kind: slurm\n    host: login\n", """\
workers:
  - {kind: slurm, host: login, partition: a100, slots: 8, group: screen-gpus}
  - {kind: slurm, host: login, partition: h200, slots: 2, allocation: per-job, group: h200}
parallel: 8
screen: {group: screen-gpus, timeout_s: 60}
promote: {top_k: 2, group: h200}
""")
    spec = parse_spec(text, "s.yaml")
    assert spec.tier_groups() == ("screen-gpus", "h200")
    names = [w.name for w in build_workers("s", spec.workers)]
    assert names[:2] == ["login:1", "login:2"] and names[8:] == ["login+:1", "login+:2"]


def test_a_job_that_ran_and_is_queued_again_counts_as_ended() -> None:
    """Jobs go in with --no-requeue (a preemption cancels them), but a requeue forced anyway
    must not leave a slot waiting on a job that will rerun nothing of ours."""
    from engine.workers.slurmcluster import SlurmCluster

    job = Job("9")
    job.update("PENDING", "Priority", "5:00")
    assert not SlurmCluster.ended(job)
    job.update("RUNNING", "None", "5:00")
    assert not SlurmCluster.ended(job)
    job.update("PENDING", "BeginTime", "5:00")  # requeued
    assert SlurmCluster.ended(job)
    for state in ("COMPLETING", "CANCELLED", "NODE_FAIL", "PREEMPTED", "TIMEOUT"):
        other = Job("10")
        other.update(state, "None", "0:00")
        assert SlurmCluster.ended(other)


def test_a_steps_exit_line_is_found_and_taken_out_however_the_output_is_cut() -> None:
    from engine.workers.slurmspare import ExitLine

    done = "__autoresearch_exit_ab12__ "
    for status, text in (("0", "METRIC loss=1\n"), ("3", "no newline at the end"), ("0", "")):
        stream = f"{text}{done}{status}\nsrun: after\n"
        for cut in range(len(stream) + 1):
            for second in (cut, min(len(stream), cut + 5)):
                line = ExitLine(done)
                parts = [stream[:cut], stream[cut:second], stream[second:]]
                out = "".join(line.feed(p) for p in parts) + line.feed("", final=True)
                assert out == f"{text}srun: after\n" and line.said == int(status), (cut, out)
    line = ExitLine(done)  # text that only looks like the line's start is not held forever
    assert line.feed("__autoresearch_") == "" and line.feed("x\n") == "__autoresearch_x\n"
    assert line.said is None
    odd = ExitLine(done)
    assert odd.feed(f"{done}oops\n") == "" and odd.said == -1  # (not a number: a failure)


def test_a_spare_steps_shell_runs_the_script_it_is_sent_and_nothing_without_its_end(
        tmp_path: Path) -> None:
    # The step's shell itself, with an `srun` that only drops its options (the real one is
    # in tests/test_slurm.py): the script's lines, quotes and `$` arrive as they were, the
    # rest of stdin is the command's, and its status is printed as it exits.
    import os
    import subprocess

    from engine.workers.slurmspare import spare_command, spare_script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\n'
                                  'SLURM_JOB_ID=7 SLURM_STEP_ID=3 exec "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    (tmp_path / "ws").mkdir()
    config = parse_spec(BASE + "    env: {FROM_SPEC: 'a b'}\n", "s.yaml").workers[0]
    line = spare_command("7", "MARK ", "END", "DONE ", config, str(tmp_path))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    script = spare_script("x='it'\\''s $HOME'\necho \"$x\" \"$FROM_SPEC\" \"$PASSED\"; pwd\n"
                          "read -r y; echo \"got $y\"; exit 4", str(tmp_path / "ws"),
                          {"PASSED": "yes"})
    assert script is not None
    ran = subprocess.run(line, shell=True, input=f"{script}\nEND\nthe command's stdin\n",
                         capture_output=True, text=True, env=env, timeout=10)
    assert ran.stdout == (f"MARK 7.3\nit's $HOME a b yes\n{tmp_path / 'ws'}\n"
                          "got the command's stdin\nDONE 4\n") and ran.returncode == 4
    # stdin ending without END (a spare discarded, a connection lost): nothing runs.
    ran = subprocess.run(line, shell=True, input=f"{script}\n", capture_output=True,
                         text=True, env=env, timeout=10)
    assert ran.stdout == "MARK 7.3\n" and ran.returncode == 0
    assert spare_script("true", "/ws", {"BAD NAME": "x"}) is None
