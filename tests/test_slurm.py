"""SLURM workers against a real single-node SLURM cluster (tests/slurm.py) reached through a
real sshd on 127.0.0.1 as its login node: held allocations, per-job queue waits, timeouts,
stops, jobs cancelled from outside and a node going down mid-run."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.loop import RunLoop
from tests.slurm import SlurmCluster, why_not
from tests.sshd import SSHLab, make_spec, open_lab, run_loop, saw_line, until

PY = sys.executable
pytestmark = pytest.mark.skipif(bool(why_not()), reason=why_not() or "SLURM runs here")


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    with SlurmCluster() as running:
        yield running


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: SlurmCluster
        ) -> Iterator[SSHLab]:
    for lab in open_lab(tmp_path, monkeypatch):
        lab.host("login")
        yield lab
    cluster.run("scancel", "--user", "root", check=False)  # nothing leaks into the next test


def slurm_worker(lab: SSHLab, cluster: SlurmCluster, **extra: object) -> dict[str, object]:
    """A spec `workers` entry: the cluster behind the lab's `login` host."""
    return {"kind": "slurm", "host": "login", "ssh_config": str(lab.config),
            "workdir": str(lab.remote / "login"), "env": cluster.env, "heartbeat_s": 2,
            "connect_timeout_s": 5, "backoff_s": 0.2, "poll_s": 0.2, "time": "5", **extra}


def job_ids(worker: str) -> list[str]:
    """`login:3 job 12.4,12.5` → ["12.4", "12.5"]."""
    found = re.search(r" job (\S+)", worker or "")
    return found.group(1).split(",") if found else []


async def test_held_allocation_runs_eight_evaluations_as_steps_of_one_job(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    spec = make_spec(params_workspace, "held", command=f"{PY} score.py",
                     workers=[slurm_worker(lab, cluster, slots=8)], parallel=8,
                     stop={"max_rounds": 8})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    assert len(rows) == 9 and all(r["score"] is not None for r in rows), rows
    steps = [s for r in rows for s in job_ids(r["worker"])]
    jobs = {s.split(".")[0] for s in steps}
    assert len(jobs) == 1 and len(set(steps)) == len(steps) == 9  # one allocation, 9 steps
    assert cluster.squeue() == []  # released when the run stopped
