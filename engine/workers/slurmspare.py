"""Hold mode's steps, made one command ahead.

Making a step costs `srun` a round of RPCs to slurmctld and slurmd, and slurmd a
slurmstepd: 40-120 ms alone, 150-350 ms when eight slots ask at once (the benchmark's
cluster, bench/parallel_scaling.py --slurm), and it sat between "the engine has a
candidate" and "its command runs". So each slot keeps a spare: a step already made in the
held allocation (`srun --jobid=... --overlap`, on an SSH channel of its own to the login
node) whose shell waits for its command on stdin. An evaluation sends the candidate's files
(through the job agent, as SSH workers do) and hands its command to the spare; the slot's
next spare is made once the command has run a while (slurm.SPARE_AFTER_S) or has ended.

Each evaluation still gets a step of its own (its id is recorded, a timeout or a stop
cancels it, SLURM's verdicts about it are read as before); only the step's start moved
ahead. The command goes as the lines of a shell script ended by a random line, and whatever
follows is the command's stdin. A spare whose stdin ends without that line (a discarded
spare, a lost connection) exits without running anything. As the step's shell exits it
prints its status on a line of its own: a command that succeeded is done then, without
waiting for srun to take the step down; after a failure srun's own words are read too.
"""
from __future__ import annotations

import asyncio
import codecs
import re
import secrets
import shlex
import time

import asyncssh

from engine import spec as specs
from engine.model import CommandResult, LineSink
from engine.workers.faults import WorkerFailed
from engine.workers.output import OutputTail
from engine.workers.remote import job_command, shell_value, signal_number
from engine.workers.slurmjobs import srun_argv
from engine.workers.sshhost import describe

READ_CHUNK = 65_536
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def spare_command(job_id: str, marker: str, end: str, done: str,
                  config: specs.SlurmWorker, workdir: str) -> str:
    """The login node's command for a spare step: the worker's `env` (srun itself may need
    it: SLURM_CONF), then srun from the shared working folder. The step prints `MARKER
    JOB.STEP` once it runs, reads script lines until the line END, runs them, and prints
    `DONE STATUS` as it exits."""
    exports = "".join(f"export {k}={shell_value(v)}; " for k, v in config.env.items())
    # The exit status goes out as a line of its own (fd 9: stdout as the step began, so a
    # command's `exec >log` does not take it): the engine need not wait for srun to end.
    run = f"exec 9>&1; trap 'echo \"{done}$?\" >&9' EXIT; eval \"$s\"; exit $?"
    inner = (f'echo "{marker}$SLURM_JOB_ID.$SLURM_STEP_ID"; s=; '
             f'while IFS= read -r l; do [ "$l" = {end} ] && {{ {run}; }}; '
             's="$s$l\n"; done; exit 0')
    outer = (f"{exports}cd {shlex.quote(workdir)} || exit 126; "
             f"exec {shlex.join(srun_argv(job_id, config))} sh -c {shlex.quote(inner)}")
    return f"sh -c {shlex.quote(outer)}"


class ExitLine:
    """Takes the step shell's `DONE STATUS` line out of its output, from chunks cut anywhere
    (text that may be the line's start is held back until the next chunk says)."""

    def __init__(self, done: str) -> None:
        self.done = done
        #: The status it printed (-1: not a number), None until seen.
        self.said: int | None = None
        self._held = ""

    def feed(self, text: str, final: bool = False) -> str:
        """The output in `text` (and what was held back), without the status line."""
        text, self._held = self._held + text, ""
        if self.said is not None:
            return text
        at = text.find(self.done)
        if at >= 0:
            status, nl, rest = text[at + len(self.done):].partition("\n")
            if nl or final:
                self.said = int(status) if status.strip().isdigit() else -1
                return text[:at] + rest  # (after a failure, what srun says may matter)
            self._held = text[at:]
            return text[:at]
        if final:
            return text
        # The end of `text` may be the start of the line: hold back what could be.
        keep = next((n for n in range(min(len(self.done) - 1, len(text)), 0, -1)
                     if self.done.startswith(text[-n:])), 0)
        if keep:
            text, self._held = text[:-keep], text[-keep:]
        return text


class Spare:
    """A step made ahead of the evaluation that will use it (or srun's failure to make it)."""

    def __init__(self, job_id: str, proc: asyncssh.SSHClientProcess, step: str,
                 early: str, end: str, done: str) -> None:
        self.job_id, self.proc, self.step = job_id, proc, step
        #: The line that ends the command's script (random: no script line equals it), and
        #: what precedes the exit status the step's shell prints as it exits.
        self.end, self.done = end, done
        #: What srun printed before the step ran (its error, when `step` is "").
        self.early = early
        self.used = False

    @property
    def usable(self) -> bool:
        """Its step runs and waits for a command (as far as the channel has said)."""
        return bool(self.step) and self.proc.exit_status is None and \
            self.proc.exit_signal is None and not self.proc.is_closing()

    def discard(self) -> None:
        """End it unused: its shell sees its stdin end and exits, and the step with it."""
        if not self.used:
            self.used = True
            try:
                self.proc.stdin.write_eof()
            except (OSError, asyncssh.Error):
                pass
            self.proc.close()

    async def run(self, script: str, stdin: str | None, timeout: float,
                  on_line: LineSink | None, started: float) -> CommandResult:
        """Hand the spare its command and wait (at most `timeout`) for it to end. A timed
        out result leaves the step to the caller (scancel), which then closes the channel."""
        self.used = True
        tail = OutputTail(on_line)
        tail.feed(self.early)  # (srun's warnings, if any: the step's output, as before)
        if not self.step:  # srun could not make the step: that is the result
            tail.close()
            return CommandResult(exit_code=self.proc.exit_status, output=tail.text(),
                                 duration=time.monotonic() - started)
        proc = self.proc
        proc.stdin.write(f"{script}\n{self.end}\n".encode() + (stdin or "").encode())
        proc.stdin.write_eof()
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        said = ExitLine(self.done)

        async def pump() -> None:
            while chunk := await proc.stdout.read(READ_CHUNK):
                tail.feed(said.feed(decoder.decode(chunk)))
                if said.said == 0:  # done: no need to wait for srun to end the step
                    return
            tail.feed(said.feed(decoder.decode(b"", final=True), final=True))
            await proc.wait_closed()

        timed_out = False
        try:
            await asyncio.wait_for(pump(), timeout)
        except TimeoutError:
            timed_out = True
        tail.close()
        if said.said == 0 and not timed_out:
            proc.close()  # srun ends the step on its own
            return CommandResult(exit_code=0, output=tail.text(),
                                 duration=time.monotonic() - started, truncated=tail.truncated)
        status, killed_by = proc.exit_status, proc.exit_signal
        if not timed_out and status is None and killed_by is None:
            raise asyncssh.ConnectionLost("Connection lost")
        code = None if timed_out else status if status is not None else -signal_number(
            killed_by[0])
        return CommandResult(exit_code=code, output=tail.text(), timed_out=timed_out,
                             duration=time.monotonic() - started, truncated=tail.truncated)


async def start(conn: asyncssh.SSHClientConnection, job_id: str,
                config: specs.SlurmWorker, workdir: str) -> Spare:
    """Make a spare step in `job_id`: returns once its step runs (or srun gave up)."""
    marker = f"__autoresearch_step_{secrets.token_hex(4)}__ "
    end = f"__autoresearch_end_{secrets.token_hex(8)}__"
    done = f"__autoresearch_exit_{secrets.token_hex(4)}__ "
    try:
        proc = await conn.create_process(spare_command(job_id, marker, end, done, config,
                                                       workdir),
                                         stderr=asyncssh.STDOUT, encoding=None)
    except (OSError, asyncssh.Error) as exc:
        raise WorkerFailed(f"{config.host}: {describe(exc)}") from None
    early = bytearray()
    step = ""
    try:
        while line := await proc.stdout.readline():
            text = line.decode(errors="replace")
            if text.startswith(marker):
                step = text[len(marker):].strip()
                break
            early.extend(line)
        if not step:
            await proc.wait_closed()
    except (OSError, asyncssh.Error) as exc:
        proc.close()
        raise WorkerFailed(f"{config.host}: {describe(exc)}") from None
    except BaseException:  # cancelled: its shell sees stdin end and exits unused
        proc.close()
        raise
    return Spare(job_id, proc, step, early.decode(errors="replace"), end, done)


def spare_script(command: str, folder: str, env: dict[str, str]) -> str | None:
    """What the spare's shell runs for a command (None: an environment name no shell
    takes, which the caller reports as the SSH worker does)."""
    if any(not ENV_NAME.match(k) for k in env):
        return None
    return job_command(command, shlex.quote(folder), env)
