"""SLURM workers against a real single-node SLURM cluster (tests/slurm.py) reached through a
real sshd on 127.0.0.1 as its login node: held allocations, per-job queue waits, timeouts,
stops, jobs cancelled from outside and a node going down mid-run."""

from __future__ import annotations

import asyncio
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
    if cluster.node_state().startswith("down"):
        cluster.set_node("resume")


def slurm_worker(lab: SSHLab, cluster: SlurmCluster, **extra: object) -> dict[str, object]:
    """A spec `workers` entry: the cluster behind the lab's `login` host."""
    return {"kind": "slurm", "host": "login", "ssh_config": str(lab.config),
            "workdir": str(lab.remote / "login"), "env": cluster.env, "heartbeat_s": 2,
            "connect_timeout_s": 5, "backoff_s": 0.2, "poll_s": 0.2, "time": "5", **extra}


def job_ids(worker: str) -> list[str]:
    """`login:3 job 12.4,12.5, queued 3s` → ["12.4", "12.5"]."""
    found = re.search(r" job ([0-9.,]+?),?(?: queued|$)", worker or "")
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
    assert cluster.left_behind() == []  # released when the run stopped
    # The run's slots, as `status --json` shows them, carry the job id field.
    from engine.export import status_json

    workers = status_json(loop.store)[0]["workers"]
    assert [w["job_id"] for w in workers] == [jobs.pop()] * 8
    assert [w["queue"] for w in workers] == [""] * 8 and workers[0]["name"] == "login:1"


async def test_per_job_evaluations_wait_in_the_queue_outside_their_timeout(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    # One GPU on the node and a GPU per job: the second job waits while the first runs.
    # Each candidate takes 2 s and may take 3.5 s: waiting too would be a timeout if it
    # counted. (The baseline, whose params are the original's, does not wait.)
    original = tmp_path / "original.yaml"
    original.write_bytes((params_workspace / "params.yaml").read_bytes())
    spec = make_spec(params_workspace, "perjob",
                     command=f"cmp -s params.yaml {original} || sleep 2; {PY} score.py",
                     workers=[slurm_worker(lab, cluster, slots=2, allocation="per-job",
                                           gres="gpu:1")],
                     parallel=2, stop={"max_rounds": 2}, timeout_s=3.5)
    seen: set[str] = set()

    async def during(loop: RunLoop) -> None:
        def queued() -> bool:  # as the app's worker lanes read it: the workers table
            rows = loop.store.workers(loop.run_id)
            seen.update(f"{r['queue']} ({r['job_id']})" for r in rows if r["queue"])
            return any("reason Resources" in q for q in seen)

        await until(queued, what="a job waiting for the GPU")

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    rows = loop.store.experiments(loop.run_id)
    assert [r["verdict"] for r in rows if r["kind"] == "baseline"] == ["baseline"]
    assert all(r["score"] is not None for r in rows), [
        (r["verdict"], r["reason"], r["duration"], r["worker"]) for r in rows]
    assert any(re.fullmatch(r"queued \d+s, reason Resources \(\d+\)", q) for q in seen), seen
    jobs = [job_ids(r["worker"])[0].split(".")[0] for r in rows]
    assert len(set(jobs)) == len(rows) == 3  # a job per evaluation
    # The experiment that waited says so (its wall time holds the wait).
    assert any(re.search(r", queued \ds$", r["worker"]) for r in rows), rows
    assert cluster.left_behind() == []


async def test_a_slots_next_step_is_made_while_its_command_runs(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each command lists its job's steps once there are two (bounded: 5 s): its own, and
    # the slot's next one, made while it runs (made as the command came, there would be
    # none). The command has lines, quotes and a `$` for the step's shell to take as they are.
    monkeypatch.setattr("engine.workers.slurm.SPARE_AFTER_S", 0.0)
    seen = tmp_path / "seen"
    seen.mkdir()
    steps = 'squeue -h -s -j "$SLURM_JOB_ID" -o %i'
    command = (f"it='it'\\''s $HOME'\n"
               f"i=0; while [ $i -lt 100 ] && [ \"$({steps} | grep -c '[.][0-9]')\" -lt 2 ]; "
               f"do sleep 0.05; i=$((i+1)); done\n"
               f"{steps} > {seen}/\"$SLURM_STEP_ID\"\n"
               f"echo \"$it\" > {seen}/said; {PY} score.py")
    spec = make_spec(params_workspace, "ahead", command=command,
                     workers=[slurm_worker(lab, cluster)], stop={"max_rounds": 1})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    assert len(rows) == 2 and all(r["score"] is not None for r in rows), rows
    assert (seen / "said").read_text() == "it's $HOME\n"
    for row in rows:
        (step,) = job_ids(row["worker"])
        job, number = step.split(".")
        listed = (seen / number).read_text().split()
        others = [s for s in listed if s.startswith(f"{job}.") and s.split(".")[1].isdigit()
                  and s != step]
        assert step in listed and others, (step, listed)  # the next one waits already
    assert cluster.left_behind() == []


async def test_warming_up_opens_every_slots_connections_and_makes_its_first_step(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path) -> None:
    # Slots 5-8 have a connection of their own: opened only when slot 5 got its first
    # evaluation, it cost the first wave of eight an SSH handshake and a job agent's start.
    from engine import spec as specs
    from engine.workers.pool import build_workers

    config = specs.SlurmWorker(**slurm_worker(lab, cluster, slots=8))
    workers = build_workers("warm", [config])
    try:
        await asyncio.wait_for(asyncio.gather(*(w.warm_up() for w in workers)), 60)
        open_now = [c for c in workers[0].cluster.ssh._conns if c and not c.is_closed()]
        assert len(open_now) == 4  # slots 1-4's and 5-8's, for the agents and for steps
        spares = [await w.spare(workers[0].cluster.held) for w in workers]
        assert len({s.step for s in spares}) == 8 and all(s.usable for s in spares)
        for spare in spares:
            spare.discard()
    finally:
        await workers[0].close()
    assert cluster.left_behind() == []


async def test_the_allocations_recheck_is_not_on_an_evaluations_way(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A busy cluster's squeue (2 s here), asked again before every evaluation (RECHECK_S
    # 0): the evaluations do not wait for it (they waited 2 s each).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text('#!/bin/sh\nsleep 2\nexec /usr/bin/squeue "$@"\n')
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setattr("engine.workers.slurmcluster.RECHECK_S", 0.0)
    worker = slurm_worker(lab, cluster)
    worker["env"] = {**cluster.env, "PATH": f"{bin_dir}:$PATH"}
    spec = make_spec(params_workspace, "recheck", command=f"{PY} score.py",
                     workers=[worker], stop={"max_rounds": 3})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = [r for r in loop.store.experiments(loop.run_id) if r["kind"] == "candidate"]
    assert len(rows) == 3 and all(r["score"] is not None for r in rows), rows
    took = max(r["finished"] for r in rows) - min(r["started"] for r in rows)
    assert took < 4.0, took  # three evaluations, one slot: 6 s and more if each waited
    assert cluster.left_behind() == []


@pytest.mark.parametrize("jobs", ["agent", "channels"])
async def test_a_timeout_cancels_its_step_and_leaves_nothing_running(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, jobs: str) -> None:
    if jobs == "channels":  # a login node without python3: a channel per command
        monkeypatch.setattr("engine.workers.agent.PYTHON", "no-such-python3")
    spec = make_spec(params_workspace, "late", command="sleep 317", timeout_s=1,
                     workers=[slurm_worker(lab, cluster)], stop={"max_rounds": 1})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    assert rows[0]["verdict"] == "timeout" and job_ids(rows[0]["worker"])
    await until(lambda: cluster.left_behind() == [] and not cluster.processes("sleep 317"),
                timeout=10, what="the step and the allocation to be gone")


@pytest.mark.parametrize("allocation", ["hold", "per-job"])
async def test_stopping_a_run_cancels_its_steps_and_jobs(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path,
        allocation: str) -> None:
    slow = tmp_path / "slow"  # candidates (not the baseline) hang once this exists
    # Per-job, with the node's one GPU per job: one candidate runs, the other waits.
    extra = {"allocation": "per-job", "gres": "gpu:1"} if allocation == "per-job" else {}
    spec = make_spec(params_workspace, "halt", timeout_s=600, parallel=2,
                     command=f"{PY} score.py; if [ -f {slow} ]; then sleep 318; fi",
                     workers=[slurm_worker(lab, cluster, slots=2, **extra)])

    async def during(loop: RunLoop) -> None:
        await until(lambda: loop.best_id is not None, what="the baseline")
        slow.touch()
        if allocation == "hold":  # (besides the slots' next steps, made ahead)
            await until(lambda: len(cluster.processes("sleep 318")) == 2,
                        what="the candidates' steps")
            assert len(cluster.squeue()) == 1 and len(cluster.steps()) >= 2  # one allocation
        else:
            await until(lambda: sorted(s for _, s, _ in cluster.squeue()) == [
                "PENDING", "RUNNING"] and cluster.steps(), what="a job running, one queued")
        loop.stopping = True  # what `stop` does
        loop.wake()
        loop.cancel_wave()

    loop = await run_loop(spec, tmp_path / "store.db", during=during, timeout=20)
    assert loop.store.get_run(loop.run_id)["status"] == "stopped"
    assert [r["verdict"] for r in loop.store.experiments(loop.run_id)] == [
        "baseline", "interrupted", "interrupted"]
    await until(lambda: cluster.left_behind() == [] and not cluster.processes("sleep 318"),
                timeout=10, what="everything to be cancelled")


async def test_a_job_cancelled_from_outside_is_retried_on_another_slot_once(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    flag = tmp_path / "preempted"  # only the first try is slow (and gets preempted)
    spec = make_spec(params_workspace, "preempt", stop={"max_rounds": 1},
                     command=f"if [ ! -f {flag} ]; then touch {flag}; echo started; sleep 319; "
                             f"fi; {PY} score.py",
                     workers=[slurm_worker(lab, cluster, slots=2, allocation="per-job")])

    async def during(loop: RunLoop) -> None:
        await until(lambda: saw_line(loop, "started"), what="the baseline's job")
        (job,) = [j for j, state, _ in cluster.squeue() if state == "RUNNING"]
        cluster.run("scancel", job)  # a preemption stand-in

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    rows = loop.store.experiments(loop.run_id)
    assert [r["verdict"] for r in rows] == ["baseline", "reverted"] or rows[0]["score"] is not None
    baseline = [r for r in rows if r["kind"] == "baseline"]
    assert len(baseline) == 1 and baseline[0]["score"] is not None
    assert baseline[0]["worker"].startswith("login:2 job ")
    assert saw_line(loop, "worker login:1 down: login: step")
    assert cluster.left_behind() == []


async def test_a_node_going_down_mid_run_is_a_worker_fault_and_the_allocation_is_renewed(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    flag = tmp_path / "down"
    spec = make_spec(params_workspace, "nodedown", stop={"max_rounds": 1},
                     command=f"if [ ! -f {flag} ]; then touch {flag}; echo started; sleep 320; "
                             f"fi; {PY} score.py",
                     workers=[slurm_worker(lab, cluster, slots=2)])

    async def during(loop: RunLoop) -> None:
        await until(lambda: saw_line(loop, "started"), what="the baseline's step")
        cluster.set_node("down")
        await until(lambda: saw_line(loop, "worker login:1 down"), what="the fault")
        cluster.set_node("resume")

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    rows = loop.store.experiments(loop.run_id)
    baseline = [r for r in rows if r["kind"] == "baseline"]
    assert len(baseline) == 1 and baseline[0]["score"] is not None
    assert all(r["verdict"] != "crashed" for r in rows)
    first = [e["line"] for e in loop.store.events(loop.run_id, limit=10_000)
             if "worker login:1 down" in e["line"]][0]
    assert "NODE_FAIL" in first or "Node failure" in first, first
    jobs = {job_ids(r["worker"])[0].split(".")[0] for r in rows}
    assert len(jobs) == 1 and cluster.left_behind() == []  # a new allocation served the rest


async def test_a_held_allocation_is_renewed_before_its_time_limit_and_the_old_one_released(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    # A one-minute allocation renewed when it has 57 s left: after about 3 s (not at once:
    # a successor itself that near its limit would ask for a third at its first step).
    # The run goes on until a step ran in the successor (bounded by max_rounds and time):
    # how soon SLURM starts the successor is the scheduler's business, not ours.
    spec = make_spec(params_workspace, "renew", command=f"sleep 0.3; {PY} score.py",
                     workers=[slurm_worker(lab, cluster, slots=2, time="1",
                                           renew_before_s=57)],
                     parallel=2, stop={"max_rounds": 60})
    live: list[int] = []
    states: list[str] = []

    async def during(loop: RunLoop) -> None:
        deadline = asyncio.get_running_loop().time() + 40
        while asyncio.get_running_loop().time() < deadline:
            seen = cluster.run("squeue", "-h", "-o", "%i|%T|%r", check=False).split()
            live.append(len(seen))  # never more than the old and its successor
            states.append(" ".join(seen) + f" node {cluster.node_state()}")
            rows = loop.store.experiments(loop.run_id)
            if len({job_ids(r["worker"])[0].split(".")[0] for r in rows if r["worker"]}) >= 2:
                break
            await asyncio.sleep(0.2)
        loop.stopping = True
        loop.wake()

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    assert 0 < max(live) <= 2, live
    rows = loop.store.experiments(loop.run_id)
    jobs = [job_ids(r["worker"])[0].split(".")[0] for r in rows if r["worker"]]
    assert len(set(jobs)) >= 2 and jobs == sorted(jobs, key=int), (jobs, states)  # moved on
    assert all(r["verdict"] not in ("crashed", "timeout") for r in rows)
    assert cluster.left_behind() == []


async def test_a_partition_sbatch_refuses_is_one_line_and_no_traceback(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    spec = make_spec(params_workspace, "nopart", command=f"{PY} score.py",
                     workers=[slurm_worker(lab, cluster, partition="nope")])
    loop = await run_loop(spec, tmp_path / "store.db")
    (row,) = loop.store.experiments(loop.run_id)
    assert row["verdict"] == "crashed"
    assert "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid " \
        "partition name specified" in row["reason"], row["reason"]
    assert not any("Traceback" in e["line"] for e in loop.store.events(loop.run_id))


async def test_jobs_left_by_a_killed_engine_of_the_run_are_cancelled_on_start(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    stale = cluster.run("sbatch", "--parsable", "--job-name=autoresearch.again", "-t", "5",
                        "-o", "/dev/null", "--wrap", "sleep 300").strip()
    other = cluster.run("sbatch", "--parsable", "--job-name=someone-else", "-t", "5",
                        "-o", "/dev/null", "--wrap", "sleep 300").strip()
    spec = make_spec(params_workspace, "again", command=f"{PY} score.py",
                     workers=[slurm_worker(lab, cluster)], stop={"max_rounds": 1})
    loop = await run_loop(spec, tmp_path / "store.db")
    assert all(r["score"] is not None for r in loop.store.experiments(loop.run_id))
    live = [job for job, _, _ in cluster.squeue()]
    assert stale not in live and other in live


async def test_a_failing_command_is_the_candidates_verdict_not_a_worker_fault(
        lab: SSHLab, cluster: SlurmCluster, params_workspace: Path, tmp_path: Path) -> None:
    spec = make_spec(params_workspace, "fails", command="echo broken; exit 3",
                     workers=[slurm_worker(lab, cluster, slots=2)], stop={"max_rounds": 1})
    loop = await run_loop(spec, tmp_path / "store.db")
    (row,) = loop.store.experiments(loop.run_id)
    assert row["verdict"] == "crashed" and "exit" in row["reason"] and "3" in row["reason"]
    assert job_ids(row["worker"]) and not saw_line(loop, "down:")
