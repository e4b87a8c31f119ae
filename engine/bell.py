"""A doorbell for steering: whoever queues a command rings the engines hosting that store.

The commands table is the one way in (any process can write it: the CLI, an attached app,
Datasette), and an engine used to read it five times a second to apply steering within
0.2 s. Each read woke the process, and a wake costs a tenth to a quarter of a millisecond
of CPU on the machines we run on: with the shared beat (engine/cadence.py), a sixth of the
engine's CPU per round at one run of 200 ms rounds (bench/library.py). Now Store.add_command rings, after its commit, every
engine recorded beside the store (engine/leftovers.py: `.<store>.locks/engines/*.json`);
an engine reads the table when rung, and once a second besides, for a writer that does not
ring (an older CLI, a hand-written INSERT, a platform without the bell).

The bell is a datagram socket in Linux's abstract namespace, named from the engine's mark:
nothing on disk to clean up after a crash, no path-length limit. Its datagrams carry
nothing: anyone who can reach it can only make the engine look at the table early.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path

_PREFIX = b"\0autoresearch-bell-"


def _address(mark: str) -> bytes:
    return _PREFIX + mark.encode()


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "AF_UNIX")


class _Bell:
    """This process's bell: one socket, and who listens on which event loop."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.listeners: dict[Callable[[], None], asyncio.AbstractEventLoop] = {}

    def open(self) -> socket.socket:
        if self.sock is None:
            from engine.leftovers import this_engine

            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.bind(_address(this_engine()["mark"]))
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            self.sock = sock
        return self.sock

    def drain(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self.sock is not None
        try:
            while self.sock.recv(64):
                pass
        except OSError:  # (BlockingIOError: all read)
            pass
        for listener, on in list(self.listeners.items()):
            if on is loop:
                listener()


_bell = _Bell()


def listen(callback: Callable[[], None]) -> Callable[[], None] | None:
    """Call `callback` on the running loop whenever this engine is rung; returns what stops
    it, or None where there is no bell (then the caller polls)."""
    if not supported():
        return None
    loop = asyncio.get_running_loop()
    try:
        sock = _bell.open()
    except OSError:
        return None
    if loop not in _bell.listeners.values():
        loop.add_reader(sock.fileno(), _bell.drain, loop)
    _bell.listeners[callback] = loop

    def stop() -> None:
        if _bell.listeners.pop(callback, None) is loop \
                and loop not in _bell.listeners.values() and not loop.is_closed():
            loop.remove_reader(sock.fileno())

    return stop


def ring(db: Path) -> int:
    """Ring every engine recorded beside the store `db`; how many were rung. Never raises:
    an engine not rung reads the table within a second anyway."""
    if not supported():
        return 0
    from engine.leftovers import records_dir

    rung = 0
    try:
        records = list(records_dir(db).glob("*.json"))
    except OSError:
        return 0
    if not records:
        return 0
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    except OSError:  # (out of descriptors, say)
        return 0
    with sock:
        sock.setblocking(False)
        for path in records:
            try:
                mark = json.loads(path.read_text(encoding="utf-8"))["mark"]
                sock.sendto(b"!", _address(str(mark)))
                rung += 1
            except (OSError, ValueError, KeyError, TypeError):
                continue  # gone, not listening, or its queue is full: it has been rung
    return rung
