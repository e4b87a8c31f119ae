"""One local command's process, watched from the running loop's selector.

asyncio's subprocess transport builds, for each command, a transport, a protocol per pipe,
a stream reader, a task to start it and several hops through the loop: on a command that
takes a millisecond that was half a millisecond of the engine's CPU, more than the spawn
itself (bench/engine_overhead.py). Here a command is a process, the read end of its
output pipe and its exit (a pidfd where Linux has them, else a thread that waits, as
asyncio's own ThreadedChildWatcher does), each a callback on the loop. On Linux those
descriptors go into one epoll of the loop's commands (`Readers`), itself registered with the
loop once: asyncio's add_reader and remove_reader, twice a command, were a twentieth of a
millisecond round's interpreter work.

The process starts in a new session (its own process group: a timeout or a stop kills
everything it started), with stdout and stderr on one pipe and stdin from /dev/null or
from a string written as the command reads it. It is started with posix_spawn (see `spawn`):
subprocess.Popen cost the engine twice its CPU (0.48 against 0.26 ms a command).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import functools
import logging
import os
import select
import signal
import subprocess
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from engine.workers.output import OutputTail

log = logging.getLogger(__name__)

READ_CHUNK = 1 << 20  # fewer, larger reads of a flood
#: After the command exits, how long its output may take to arrive before whatever it left
#: running (holding the pipe open) is killed.
EXIT_GRACE_S = 0.2


@functools.cache
def _devnull() -> int:
    """One /dev/null descriptor for every command's stdin (opening files is not free)."""
    return os.open(os.devnull, os.O_RDONLY)


#: The shell runs the command as its own script, after going to the folder given as $1
#: (posix_spawn has no working-directory attribute before Python 3.13's file actions). One
#: line: the command's own line numbers are unchanged; `set --`: no positional parameters.
_IN_FOLDER = 'cd -- "$1" || exit 127; set --; '
#: Signals Python ignores that a command expects at their default (as Popen restores them).
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
                         if hasattr(signal, name))


def spawn(command: str, cwd: Path, env: dict[bytes, bytes] | None, stdin: int,
          output: int) -> int:
    """Start `sh -c command` in `cwd`, in a session of its own, stdin from `stdin` and
    stdout and stderr to `output`; returns its pid. Only 0, 1 and 2 are passed on: every
    descriptor this process opens is close-on-exec (Python's, SQLite's), so unlike Popen it
    need not close the rest; what this process was started with is made so at its first
    command (`_inherited_made_private`). When 0, 1 or 2 is not open here (a pipe could then
    take that number and be passed on wrong), or there is no posix_spawn, Popen does it."""
    folder = os.path.abspath(cwd)  # (absolute: CDPATH is not consulted)
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "No such file or directory", str(cwd))
    environ = env if env is not None else getattr(os.environ, "_data", os.environ)
    if hasattr(os, "posix_spawn") and min(stdin, output) > 2 and _inherited_made_private():
        return os.posix_spawn(
            "/bin/sh", ["sh", "-c", _IN_FOLDER + command, "sh", folder], environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, output, 1),
                          (os.POSIX_SPAWN_DUP2, output, 2)],
            setsid=True, setsigdef=_DEFAULT_SIGNALS)
    proc = subprocess.Popen(command, shell=True, cwd=cwd, env=env, start_new_session=True,
                            stdin=stdin, stdout=output, stderr=output)
    proc.returncode = 0  # (reaped by the exit's watcher: Popen must never wait for it)
    return proc.pid


@functools.cache
def _inherited_made_private() -> bool:
    """Descriptors above 2 that this process inherited (a terminal's, a harness's pipe) made
    close-on-exec, once: a command that kept one open could hold up whoever waits for its
    end. False where they cannot be listed (then Popen, which closes them, starts commands)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return False
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):  # (the listing's own descriptor, closed now)
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
    return True


def _reap(pid: int) -> int:
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped elsewhere
        log.warning("child process pid %d exit status already read: will report 255", pid)
        return 255
    return os.waitstatus_to_exitcode(status)


class Readers:
    """Descriptors watched for reading on behalf of one loop, in an epoll of their own that
    the loop watches (level-triggered, as add_reader is). Where there is no epoll, the
    loop's own add_reader and remove_reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._epoll = select.epoll() if hasattr(select, "epoll") else None
        if self._epoll is not None:
            loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: Callable[[], object]) -> None:
        if self._epoll is None:
            self.loop.add_reader(fd, callback)
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def remove(self, fd: int) -> None:
        """Stop watching `fd` (before it is closed)."""
        if self._epoll is None:
            self.loop.remove_reader(fd)
        elif self._callbacks.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def _ready(self) -> None:
        events = self._epoll.poll(0)  # type: ignore[union-attr]
        # Each callback as registered when polled: one that a callback before it removed
        # (or whose number a new descriptor took meanwhile) is not called.
        due = [(fd, self._callbacks.get(fd)) for fd, _ in events]
        for fd, callback in due:
            if callback is not None and self._callbacks.get(fd) is callback:
                callback()


def readers(loop: asyncio.AbstractEventLoop) -> Readers:
    """The loop's Readers. Only the loop's own registration of the epoll holds it (the
    mapping keeps a weak reference), so closing the loop frees it and closes the epoll, even
    while the loop object itself lives on (kept by a traceback)."""
    ref = _of_loop.get(loop)
    found = ref() if ref is not None else None
    if found is None:
        found = Readers(loop)
        _of_loop[loop] = weakref.ref(found)
    return found


_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[Readers]] = (
    weakref.WeakKeyDictionary())


def watch_exit(loop: asyncio.AbstractEventLoop, pid: int,
               callback: Callable[[int], object]) -> None:
    """Call `callback(exit code)` on the loop once the child `pid` has exited (and reap it)."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux 5.3+: a thread waits
        def wait() -> None:
            code = _reap(pid)
            with contextlib.suppress(RuntimeError):  # (the loop closed meanwhile)
                loop.call_soon_threadsafe(callback, code)

        threading.Thread(target=wait, name=f"wait-{pid}", daemon=True).start()
        return

    def exited() -> None:
        readers(loop).remove(pidfd)
        os.close(pidfd)
        callback(_reap(pid))

    readers(loop).add(pidfd, exited)


class Running:
    """A started command: `eof` is done when its output pipe closed, `exited` (its exit
    code) when the process ended. Its output goes to `tail` as it arrives."""

    def __init__(self, command: str, cwd: Path, env: dict[bytes, bytes] | None,
                 stdin: str | None, tail: OutputTail,
                 on_leftovers: Callable[[int], int]) -> None:
        self.loop = asyncio.get_running_loop()
        self.tail = tail
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._on_leftovers = on_leftovers
        #: Processes killed because they outlived the command holding its output.
        self.leftovers = 0
        self.eof: asyncio.Future[None] = self.loop.create_future()
        self.exited: asyncio.Future[int] = self.loop.create_future()
        self._grace: asyncio.TimerHandle | None = None
        out, out_w = os.pipe()
        feed = feed_w = None
        try:
            if stdin is not None:
                feed, feed_w = os.pipe()
            self.pid = spawn(command, cwd, env, _devnull() if feed is None else feed, out_w)
        except BaseException:
            for fd in (out, feed_w):
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, feed):  # (the child's ends: the child has them now)
                if fd is not None:
                    os.close(fd)
        os.set_blocking(out, False)
        self._out: int | None = out
        readers(self.loop).add(out, self._read)
        self._feed: int | None = feed_w
        self._pending = memoryview(stdin.encode()) if stdin is not None else None
        if feed_w is not None:
            os.set_blocking(feed_w, False)
            self.loop.add_writer(feed_w, self._write)
        watch_exit(self.loop, self.pid, self._ended)

    @property
    def returncode(self) -> int | None:
        return self.exited.result() if self.exited.done() else None

    def stop_reading(self) -> None:
        """Close the output pipe; what was read is kept."""
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._out is not None:
            readers(self.loop).remove(self._out)
            os.close(self._out)
            self._out = None
            self.tail.feed(self._decoder.decode(b"", final=True))
        if not self.eof.done():
            self.eof.set_result(None)

    def close(self) -> None:
        """Close both pipes (the exit is still watched: the process is reaped when it ends)."""
        self.stop_reading()
        self._close_feed()

    # ------------------------------------------------------------ callbacks

    def _read(self) -> None:
        try:
            data = os.read(self._out, READ_CHUNK)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.tail.feed(self._decoder.decode(data))
        else:
            self.stop_reading()

    def _write(self) -> None:
        assert self._feed is not None and self._pending is not None
        try:
            written = os.write(self._feed, self._pending)
        except BlockingIOError:
            return
        except OSError:  # the command closed its input (or exited): the rest is not wanted
            written = len(self._pending)
        self._pending = self._pending[written:]
        if not self._pending:
            self._close_feed()

    def _close_feed(self) -> None:
        if self._feed is not None:
            self.loop.remove_writer(self._feed)
            os.close(self._feed)
            self._feed = None

    def _ended(self, code: int) -> None:
        if not self.exited.done():
            self.exited.set_result(code)
        if self._out is not None:
            self._grace = self.loop.call_later(EXIT_GRACE_S, self._kill_leftovers)

    def _kill_leftovers(self) -> None:
        self._grace = None
        if self._out is not None:
            self.leftovers = self._on_leftovers(self.pid)  # then the pipe closes, the read ends
