"""A real filesystem that fills up on demand: a small tmpfs mounted for the test (root only).

`fill()` writes a filler file until the filesystem answers ENOSPC; `free()` deletes it. Tests
that need it skip where mounting is not allowed (not root, no tmpfs).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

CHUNK = 64 * 1024


class FullDisk:
    """A mounted tmpfs of `size_mb`, with a filler file that takes whatever space is left."""

    def __init__(self, mount: Path) -> None:
        self.mount = mount
        self.filler = mount / "filler"

    def fill(self) -> None:
        """Take every free block (ENOSPC from then on for anyone writing here)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for size in (CHUNK, 512, 1):  # then the last bytes, smaller than a chunk
                block = b"\0" * size
                while True:
                    try:
                        os.write(fd, block)
                    except OSError:
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


def can_mount() -> bool:
    return os.geteuid() == 0


@contextlib.contextmanager
def full_disk(where: Path, size_mb: int = 16) -> Iterator[FullDisk]:
    """Mount a tmpfs of `size_mb` at `where` for the block's life."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"cannot mount a tmpfs at {where}: {done.stderr.strip()}")
    try:
        yield FullDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
