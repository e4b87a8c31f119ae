"""Bounded capture of a command's output: lines stream out as they arrive, memory stays flat.

A command may print gigabytes; only the last TAIL_BYTES are kept, and only the first
MAX_STREAMED_LINES lines are split and forwarded, so a flood costs memory-speed copying, not
per-line Python work.
"""

from __future__ import annotations

from collections import deque

from engine.model import LineSink

#: How much output one command keeps in memory (its tail); the rest is only streamed.
TAIL_BYTES = 256_000
#: Longest single line forwarded; longer lines are cut (a binary blob has no newlines).
MAX_LINE = 8_000
#: Lines forwarded to the sink per command before the stream is thinned to a notice.
MAX_STREAMED_LINES = 2_000


class OutputTail:
    """Keeps the last TAIL_BYTES characters of output and forwards a bounded number of lines."""

    def __init__(self, on_line: LineSink | None) -> None:
        self.on_line = on_line
        self.chunks: deque[str] = deque()
        self.size = 0
        self.total = 0
        self.streamed = 0
        self._partial = ""

    @property
    def truncated(self) -> bool:
        return self.total > TAIL_BYTES

    def feed(self, chunk: str) -> None:
        self.total += len(chunk)
        self.chunks.append(chunk)
        self.size += len(chunk)
        while len(self.chunks) > 1 and self.size - len(self.chunks[0]) >= TAIL_BYTES:
            self.size -= len(self.chunks.popleft())
        if self.on_line is not None and self.streamed <= MAX_STREAMED_LINES:
            self._stream(chunk)

    def _stream(self, chunk: str) -> None:
        assert self.on_line is not None
        parts = (self._partial + chunk).split("\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_LINE:
            parts.append(self._partial[:MAX_LINE] + " …[line cut]")
            self._partial = ""
        for line in parts:
            self.streamed += 1
            if self.streamed > MAX_STREAMED_LINES:
                self.on_line("… output continues; only its tail is kept")
                return
            self.on_line(line[:MAX_LINE])

    def close(self) -> None:
        if self._partial and self.on_line is not None and self.streamed < MAX_STREAMED_LINES:
            self.streamed += 1
            self.on_line(self._partial[:MAX_LINE])
        self._partial = ""

    def text(self) -> str:
        text = "".join(self.chunks)
        if len(text) > TAIL_BYTES:
            text = text[-TAIL_BYTES:]
            cut = text.find("\n")
            text = text[cut + 1:] if 0 <= cut < 1000 else text
        return text.removesuffix("\n")
