"""A local command as a process watched from the loop (engine/workers/process.py): input fed
as the command reads it, output decoded across reads, the exit seen with or without pidfds,
nothing left running or open after a timeout or a cancellation."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from engine.workers import process
from engine.workers.local import run_local


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (an orphan is reaped by init, in its time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def test_a_megabyte_on_stdin_reaches_the_command(tmp_path: Path):
    """More than a pipe holds: written as the command reads it, not all at once."""
    data = "x" * (1 << 20)
    result = asyncio.run(run_local("wc -c", tmp_path, timeout=20, stdin=data))
    assert (result.exit_code, result.output.strip()) == (0, str(len(data)))


def test_a_command_that_never_reads_its_input_still_ends(tmp_path: Path):
    result = asyncio.run(run_local("echo done; exit 3", tmp_path, timeout=20,
                                   stdin="y" * (1 << 20)))
    assert (result.exit_code, result.output.strip(), result.timed_out) == (3, "done", False)


def test_a_character_split_across_two_reads_is_one_character(tmp_path: Path):
    result = asyncio.run(run_local(r"printf '\342\202'; sleep 0.2; printf '\254 ok\n'",
                                   tmp_path, timeout=20))
    assert result.output.strip() == "€ ok"


def test_a_cancelled_command_is_killed_with_its_group_and_reaped(tmp_path: Path):
    async def main() -> None:
        task = asyncio.create_task(run_local(
            "sleep 30 & echo $! > child; echo $$ > pid; wait", tmp_path, timeout=60))
        deadline = time.monotonic() + 10
        while not (tmp_path / "child").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = open_fds()
    asyncio.run(main())
    with pytest.raises(ProcessLookupError):  # the shell: killed and reaped
        os.kill(int((tmp_path / "pid").read_text()), 0)
    # What it started: killed with the group (a SIGKILL is delivered when the process next
    # runs: on a loaded machine it may still be dying a moment after the shell was reaped).
    child = int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(child)
    assert open_fds() == before


def test_many_commands_leave_no_descriptor_open(tmp_path: Path):
    async def main() -> list[int | None]:
        codes = []
        for i in range(40):
            codes.append((await run_local(f"exit {i % 3}", tmp_path, timeout=10)).exit_code)
        codes.append((await run_local("sleep 5", tmp_path, timeout=0.1)).exit_code)
        return codes

    asyncio.run(run_local("true", tmp_path, timeout=10))  # (the /dev/null descriptor, once)
    before = open_fds()
    codes = asyncio.run(main())
    assert codes == [i % 3 for i in range(40)] + [None]
    assert open_fds() == before


def test_without_pidfds_a_thread_waits_for_the_exit(tmp_path: Path, monkeypatch):
    """Where pidfd_open is missing (not Linux, old kernels), exit codes still arrive."""
    monkeypatch.delattr(process.os, "pidfd_open")

    async def main() -> list:
        return await asyncio.gather(run_local("sleep 0.2; exit 7", tmp_path, timeout=10),
                                    run_local("echo hi", tmp_path, timeout=10),
                                    run_local("sleep 30", tmp_path, timeout=0.2))

    slow, echo, hung = asyncio.run(main())
    assert (slow.exit_code, echo.exit_code, echo.output) == (7, 0, "hi")
    assert hung.timed_out and hung.exit_code is None


def test_a_missing_folder_is_an_error_with_nothing_left_open(tmp_path: Path):
    before = open_fds()
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_local("true", tmp_path / "gone", timeout=10, stdin="x"))
    assert open_fds() == before


def test_a_command_gets_only_its_own_descriptors_default_signals_and_no_arguments(
        tmp_path: Path):
    """Started with posix_spawn (not Popen, which closed every other descriptor in the
    child): a descriptor this process inherited is not passed on, SIGPIPE is back at its
    default (Python ignores it), the command's own lines are numbered from 1 and it has no
    positional parameters, in the folder asked for."""
    inherited, other_end = os.pipe()
    os.set_inheritable(inherited, True)  # as a terminal's or a harness's descriptor is
    process._inherited_made_private.cache_clear()
    try:
        script = ('ls /proc/$$/fd; awk \'/SigIgn/{print $2}\' /proc/self/status; '
                  'echo "$0 $# $(pwd)"\nnosuchcommand_q')
        result = asyncio.run(run_local(script, tmp_path, timeout=10))
    finally:
        os.close(inherited)
        os.close(other_end)
    *fds, ignored, last, error = result.output.split("\n")
    assert sorted(fds) == ["0", "1", "2"]
    assert int(ignored, 16) & (1 << (13 - 1)) == 0  # SIGPIPE (13) not ignored
    assert last == f"sh 0 {tmp_path.resolve()}"
    assert "2: nosuchcommand_q" in error  # (dash: "sh: 2: …", bash: "sh: line 2: …")
    assert result.exit_code == 127


def test_with_a_standard_descriptor_closed_popen_starts_the_command(tmp_path: Path):
    """A pipe given number 0, 1 or 2 (this process started with one closed) would not be
    passed on right by posix_spawn's dup2: Popen starts such a command, reaped as usual."""
    read, write = os.pipe()
    try:
        pid = process.spawn("echo popen", tmp_path, None, 0, write)
        os.close(write)
        assert os.read(read, 100) == b"popen\n"
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        os.close(read)
