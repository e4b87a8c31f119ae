"""Bounded capture of a command's output: lines stream out as they arrive, memory stays flat."""

from __future__ import annotations

from collections import deque

from engine.model import LineSink

#: How much output one command keeps in memory (its tail); the rest is only streamed.
TAIL_BYTES = 256_000
#: Longest single line kept; longer lines are cut (a binary blob has no newlines).
MAX_LINE = 8_000
#: Lines streamed to the sink per command before the stream is thinned to a notice.
MAX_STREAMED_LINES = 2_000


class OutputTail:
    """Keeps the last TAIL_BYTES of output and forwards a bounded number of lines."""

    def __init__(self, on_line: LineSink | None) -> None:
        self.on_line = on_line
        self.lines: deque[str] = deque()
        self.size = 0
        self.total = 0
        self.streamed = 0
        self._partial = ""

    @property
    def truncated(self) -> bool:
        return self.total > self.size

    def feed(self, chunk: str) -> None:
        text = self._partial + chunk
        parts = text.split("\n")
        self._partial = parts.pop()
        if len(self._partial) > MAX_LINE:
            parts.append(self._partial[:MAX_LINE] + " …[line cut]")
            self._partial = ""
        for line in parts:
            self._keep(line[:MAX_LINE])

    def close(self) -> None:
        if self._partial:
            self._keep(self._partial[:MAX_LINE])
            self._partial = ""

    def _keep(self, line: str) -> None:
        self.total += len(line) + 1
        self.lines.append(line)
        self.size += len(line) + 1
        while self.size > TAIL_BYTES and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1
        if self.on_line is not None:
            self.streamed += 1
            if self.streamed <= MAX_STREAMED_LINES:
                self.on_line(line)
            elif self.streamed == MAX_STREAMED_LINES + 1:
                self.on_line("… output continues; only its tail is kept")

    def text(self) -> str:
        return "\n".join(self.lines)
