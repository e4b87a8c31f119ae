"""SSH workers against a real OpenSSH sshd on 127.0.0.1: folders, streaming, timeouts,
host keys, connection sharing, and whole runs whose evaluations happen "remotely"."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from engine import spec as specs
from engine.loop import RunLoop
from engine.workers.faults import WorkerFailed
from engine.workers.pool import build_workers
from engine.workers.ssh import KILL_GRACE_S, SSHHost, SSHWorker, job_script, parse_target
from tests.conftest import write
from tests.sshd import SSHLab, make_spec, open_lab, process_alive, run_loop, until

PY = sys.executable


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    yield from open_lab(tmp_path, monkeypatch)


@pytest.fixture(params=["agent", "channels"])
def jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways jobs reach a host: its job agent, or (a host without python3) a channel
    per job."""
    if request.param == "channels":
        monkeypatch.setattr("engine.workers.agent.PYTHON", "no-such-python3")
    return request.param


def ssh_config(lab: SSHLab, alias: str, **extra: object) -> specs.SSHWorker:
    return specs.SSHWorker.model_validate(lab.worker(alias, **extra))


@asynccontextmanager
async def box_worker(lab: SSHLab, **extra: object) -> AsyncIterator[SSHWorker]:
    """One slot on a fresh host `box`, closed afterwards."""
    lab.host("box")
    worker = SSHWorker(ssh_config(lab, "box", **extra), 1)
    try:
        yield worker
    finally:
        await worker.close()


def candidate(tmp_path: Path) -> Path:
    folder = tmp_path / "candidate"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text("print('METRIC loss=1.5')\n")
    (folder / "data" / "notes.txt").write_text("café\n")
    return folder


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize("text, expected", [
    ("gpu-box", (None, "gpu-box", None)),
    ("root@10.0.0.5:2222", ("root", "10.0.0.5", 2222)),
    ("alice@host", ("alice", "host", None)),
    ("[::1]:2200", (None, "::1", 2200)),
    ("host:notaport", (None, "host:notaport", None)),
])
def test_host_forms_parse_into_user_host_and_port(text: str, expected: tuple) -> None:
    assert parse_target(text) == expected


def test_slots_of_one_host_share_it_and_get_readable_names() -> None:
    configs = [specs.SSHWorker(kind="ssh", host="root@gpu-box:2222", slots=2),
               specs.SSHWorker(kind="ssh", host="root@gpu-box:2222", slots=1),
               specs.LocalWorker(kind="local")]
    workers = build_workers("run", configs)
    assert [w.name for w in workers] == ["gpu-box:2222:1", "gpu-box:2222:2", "gpu-box:2222+:1",
                                         "local:4"]
    assert workers[0].host is workers[1].host and workers[0].host is not workers[2].host


def test_job_script_quotes_everything_it_is_given() -> None:
    script = job_script("echo \"$X\" 'it''s'", "'/w s'", "'/w s/1.pgid'", {"X": "a b; rm -rf /"},
                        "srun --gres=gpu:1")
    assert "rm -rf /'" in script and "srun --gres=gpu:1 sh -c" in script


async def test_agent_frames_are_cut_from_any_chunking_after_a_chatty_login_shell() -> None:
    from engine.workers.agent import RemoteAgent, _Channel

    session = _Channel()
    session.data_received(b"Welcome! conda base activated\n0 hel", None)
    assert not session.hello.done()
    session.data_received(b"lo 1\n1", None)
    assert session.hello.done()
    agent = RemoteAgent(None, session)  # type: ignore[arg-type]  (nothing is sent here)
    frames: list[tuple[bytes, bytes]] = []
    agent.jobs[1] = lambda kind, payload: frames.append((kind, payload))
    stream = b"1 out 6\nline\n\n1 out 0\n2 out 3\nxyz1 exit 1\n0"
    for i in range(len(stream)):  # byte by byte: frames never depend on packet boundaries
        session.data_received(stream[i:i + 1], None)
    session.data_received(b"noise", 1)  # stderr is not frames
    assert frames == [(b"out", b"line\n\n"), (b"out", b""), (b"exit", b"0")]
    session.connection_lost(None)
    assert frames[-1] == (b"lost", b"") and agent.lost is not None


# ---------------------------------------------------------------- sessions


async def test_candidate_runs_in_a_fresh_remote_folder_that_is_removed_after(
        lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    lab.host("box")
    worker = SSHWorker(ssh_config(lab, "box", env={"GREETING": "hello there"}), 1)
    lines: list[str] = []
    try:
        async with worker.open(candidate(tmp_path)) as session:
            result = await session.run(
                f"cat data/notes.txt; echo \"$GREETING\"; read -r word; echo \"got $word\"; "
                f"{PY} train.py; pwd; exit 3", timeout=20, stdin="bird\n", on_line=lines.append)
            assert await session.read_file("data/notes.txt") == "café\n".encode()
            assert (session.agent is not None) == (jobs == "agent")
            assert await session.read_file("missing.txt") is None
            assert await session.read_file("../../etc/passwd") is None
            assert await session.read_file("/etc/passwd") is None
    finally:
        await worker.close()
    assert result.exit_code == 3 and not result.timed_out
    assert lines[:4] == ["café", "hello there", "got bird", "METRIC loss=1.5"]
    assert lines[4].startswith(str(lab.remote / "box"))  # a fresh folder under workdir
    assert lab.remote_folders() == []


async def test_commands_started_together_wait_for_the_files_the_first_one_carries(
        lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    async with box_worker(lab) as worker:
        async with worker.open(candidate(tmp_path)) as session:
            results = await asyncio.gather(*(session.run(f"cat data/notes.txt; echo {i}",
                                                         timeout=20) for i in range(3)))
        async with worker.open(candidate(tmp_path)) as session:
            first_read = await session.read_file("train.py")  # before any command
    assert [r.output for r in results] == [f"café\n{i}" for i in range(3)]
    assert first_read == b"print('METRIC loss=1.5')\n"


async def test_files_that_cannot_be_unpacked_are_a_worker_fault(
        lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    async with box_worker(lab) as worker:
        await worker.warm_up()
        workdir = Path(worker.host.workdir)
        workdir.rmdir()
        workdir.write_text("a file where the working folder was")
        async with worker.open(candidate(tmp_path)) as session:
            # tar's last words, or the agent's unpacking error
            with pytest.raises(WorkerFailed, match="box: cannot unpack the candidate: "
                               "(tar: |.*Not a directory)"):
                await session.run("echo never", timeout=20)


async def test_launcher_prefixes_every_command(lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    async with box_worker(lab, launcher="env LAUNCHED=yes") as worker:
        async with worker.open(candidate(tmp_path)) as session:
            result = await session.run("echo launched=$LAUNCHED", timeout=20)
    assert result.output.strip() == "launched=yes"


async def test_timeout_kills_the_remote_process_group_not_just_the_channel(
        lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    async with box_worker(lab) as worker:
        async with worker.open(candidate(tmp_path)) as session:
            # A grandchild in the background, detached from the channel's output.
            result = await session.run(
                "sleep 300 >/dev/null 2>&1 & echo $! > bg.pid; echo started; sleep 300",
                timeout=1.0)
            pid = int((await session.read_file("bg.pid")).decode())
    assert result.timed_out and result.exit_code is None and "started" in result.output
    if jobs == "agent":  # the job dies on SIGTERM: no waiting out the grace period
        assert result.duration < 1.0 + KILL_GRACE_S - 0.5
    await until(lambda: not process_alive(pid), timeout=10, what="the background sleep to die")


async def test_a_command_that_fails_is_a_result_not_a_worker_fault(
        lab: SSHLab, tmp_path: Path, jobs: str) -> None:
    async with box_worker(lab) as worker:
        async with worker.open(candidate(tmp_path)) as session:
            missing = await session.run("no-such-program-here", timeout=20)
            killed = await session.run("kill -9 $$", timeout=20)
    assert missing.exit_code == 127 and "not found" in missing.output
    assert killed.exit_code == 128 + 9


async def test_many_slots_share_a_few_connections(lab: SSHLab, tmp_path: Path,
                                                  jobs: str) -> None:
    server = lab.host("box")
    workers = build_workers("run", [ssh_config(lab, "box", slots=8)])
    folder = candidate(tmp_path)

    async def job(worker: SSHWorker) -> str:
        async with worker.open(folder) as session:
            return (await session.run("sleep 0.5; echo ok", timeout=20)).output

    try:
        jobs = asyncio.gather(*(job(w) for w in workers))
        await until(lambda: server.connections() >= 2, what="connections")
        await asyncio.sleep(0.2)
        connections = server.connections()
        assert await jobs == ["ok"] * 8
    finally:
        await workers[0].close()
    assert connections == 2  # 8 slots / 4 per connection


async def test_a_dead_job_agent_is_a_worker_fault_and_the_next_job_gets_a_new_one(
        lab: SSHLab, tmp_path: Path) -> None:
    server = lab.host("box")
    worker = SSHWorker(ssh_config(lab, "box"), 1)
    try:
        async with worker.open(candidate(tmp_path)) as session:
            job = asyncio.ensure_future(session.run("echo started; sleep 30", timeout=60))
            await until(lambda: server.processes("sleep 30"), what="the remote job")
            remote = server.processes("sleep 30")
            (agent,) = server.processes("python3 -I -c")
            os.kill(agent, signal.SIGKILL)
            with pytest.raises(WorkerFailed, match="box: "):
                await job
        async with worker.open(candidate(tmp_path)) as session:  # reconnects, cleans up
            result = await session.run("cat data/notes.txt", timeout=20)
            assert session.agent is not None
        await until(lambda: not any(process_alive(p) for p in remote), timeout=10,
                    what="the orphaned job to be killed")
    finally:
        await worker.close()
    assert result.output == "café"
    assert lab.remote_folders() == []


# ---------------------------------------------------------------- host keys


async def test_unknown_host_is_refused_with_a_clear_message(
        lab: SSHLab, tmp_path: Path) -> None:
    lab.host("stranger", trusted=False)
    host = SSHHost(ssh_config(lab, "stranger"))
    with pytest.raises(WorkerFailed) as caught:
        await host.connection(0)
    assert caught.value.permanent
    message = str(caught.value)
    assert "unknown host key" in message and "trust_unknown_host: true" in message
    assert f"ssh-keyscan -p {lab.ports['stranger']} 127.0.0.1" in message


async def test_trusting_an_unknown_host_learns_its_key_but_a_changed_key_is_refused(
        lab: SSHLab, tmp_path: Path) -> None:
    lab.host("stranger", trusted=False)
    known = lab.keys.known_hosts
    host = SSHHost(ssh_config(lab, "stranger", trust_unknown_host=True))
    await host.connection(0)
    await host.close()
    assert f"[127.0.0.1]:{lab.ports['stranger']} ssh-ed25519" in known.read_text()
    assert "trusted a new host key" in host.notes[0]

    # The same address now presents another key: refused, trust or not.
    other = __import__("asyncssh").generate_private_key("ssh-ed25519")
    lines = known.read_text().replace(lab.keys.host_public,
                                      other.export_public_key().decode().strip())
    known.write_text(lines)
    host = SSHHost(ssh_config(lab, "stranger", trust_unknown_host=True))
    with pytest.raises(WorkerFailed, match="HOST KEY CHANGED"):
        await host.connection(0)


async def test_user_at_host_port_with_identity_and_known_hosts(
        lab: SSHLab, tmp_path: Path) -> None:
    server = lab.host("box")
    empty_config = tmp_path / "empty_config"
    empty_config.write_text("")
    config = specs.SSHWorker(
        kind="ssh", host=f"{__import__('getpass').getuser()}@127.0.0.1:{server.port}",
        identity=str(lab.keys.identity), known_hosts=str(lab.keys.known_hosts),
        ssh_config=str(empty_config), workdir="~/.cache/ar-test-jobs")
    worker = SSHWorker(config, 1)
    try:
        async with worker.open(candidate(tmp_path)) as session:
            result = await session.run("pwd", timeout=20)
    finally:
        await worker.close()
    assert worker.name == f"127.0.0.1:{server.port}:1"
    assert result.output.strip().startswith(str(Path.home() / ".cache/ar-test-jobs"))


async def test_wrong_identity_is_refused_as_permanent(lab: SSHLab, tmp_path: Path) -> None:
    lab.host("box")
    stranger_key = tmp_path / "other_key"
    __import__("asyncssh").generate_private_key("ssh-ed25519").write_private_key(stranger_key)
    empty = tmp_path / "empty_config"
    empty.write_text("")
    config = specs.SSHWorker(kind="ssh", host=f"root@127.0.0.1:{lab.ports['box']}",
                             identity=str(stranger_key), known_hosts=str(lab.keys.known_hosts),
                             ssh_config=str(empty))
    with pytest.raises(WorkerFailed, match="authentication refused") as caught:
        await SSHHost(config).connection(0)
    assert caught.value.permanent and "PRIVATE KEY" not in str(caught.value)


# ---------------------------------------------------------------- whole runs


async def test_a_run_evaluates_every_candidate_over_ssh_and_streams_its_output(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    lab.host("gpu")
    spec = make_spec(params_workspace, "remote",
                     command=f"echo warming up; sleep 0.3; {PY} score.py",
                     workers=[lab.worker("gpu", slots=2)], parallel=2,
                     stop={"max_rounds": 4})
    lanes: list[dict] = []

    async def during(loop: RunLoop) -> None:
        def busy() -> bool:  # what an attached UI reads for its worker lanes
            lanes[:] = [w for w in loop.store.workers(loop.run_id) if w["status"] == "busy"]
            return bool(lanes)

        await until(busy, what="a busy worker row")

    loop = await run_loop(spec, tmp_path / "store.db", during=during)
    assert lanes[0]["name"] == "gpu:1" and lanes[0]["job"] == "#1"
    rows = loop.store.experiments(loop.run_id)
    assert [r["kind"] for r in rows] == ["baseline"] + ["candidate"] * 4
    assert all(r["score"] is not None and r["worker"] in ("gpu:1", "gpu:2") for r in rows)
    streamed = [e for e in loop.store.events(loop.run_id, limit=10_000)
                if e["source"].startswith("gpu:")]
    assert {e["line"] for e in streamed} >= {"warming up"}
    assert all(e["experiment_id"] for e in streamed if e["line"].startswith("METRIC"))
    assert {w["name"]: w["status"] for w in loop.store.workers(loop.run_id)} == {
        "gpu:1": "stopped", "gpu:2": "stopped"}
    assert lab.remote_folders() == []


async def test_a_test_suite_run_reads_its_junit_report_back_from_the_host(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    lab.host("ci")
    write(params_workspace / "junit.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        cases = [("x_is_seven", p["x"] == 7), ("y_is_b", p["y"] == "b"), ("x_small", p["x"] < 10)]
        body = "".join(f'<testcase classname="t" name="{n}">' +
                       ("" if ok else '<failure message="no"/>') + "</testcase>" for n, ok in cases)
        open("report.xml", "w").write(f"<testsuite>{body}</testsuite>")
    """)
    spec = make_spec(params_workspace, "suite", command="", workers=[lab.worker("ci")],
                     evaluate={"kind": "tests", "command": f"{PY} junit.py",
                               "junit": "report.xml"}, stop={"max_rounds": 2})
    loop = await run_loop(spec, tmp_path / "store.db")
    rows = loop.store.experiments(loop.run_id)
    assert rows[0]["score"] == 1 / 3 and rows[0]["worker"] == "ci:1"
    assert [r["item"] for r in loop.store.item_results(rows[0]["id"])] == [
        "t::x_is_seven", "t::y_is_b", "t::x_small"]


async def test_a_host_with_an_unknown_key_fails_the_baseline_with_that_reason(
        lab: SSHLab, params_workspace: Path, tmp_path: Path) -> None:
    lab.host("stranger", trusted=False)
    spec = make_spec(params_workspace, "refused", command=f"{PY} score.py",
                     workers=[lab.worker("stranger")])
    loop = await run_loop(spec, tmp_path / "store.db", timeout=30)
    run = loop.store.get_run(loop.run_id)
    assert run["status"] == "failed"
    assert "unknown host key" in run["stop_reason"] and "Traceback" not in run["stop_reason"]
