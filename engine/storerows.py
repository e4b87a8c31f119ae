"""What every part of the Store stands on: its connection, text as it may be stored (secrets
masked, long text clipped) and the few helpers every statement goes through. The parts
(engine/storewrites.py, storereads.py, storeui.py) are mixins of engine/store.py's Store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from engine.redact import KeyBlockLines, make_redactor

#: Largest text kept for one log tail, diff or evidence; longer text is cut in the middle.
MAX_TEXT = 64_000


def clip(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Keep the head and tail of long text, marking the cut."""
    if text is None or len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… [{len(text) - limit} characters cut] …\n{text[-half:]}"


class StoreRows:
    """The connection and helpers the Store's parts share (set up by Store.__init__)."""

    conn: sqlite3.Connection
    redact: Callable[[str | None], str | None]
    _secrets: set[str]
    _key_lines: KeyBlockLines

    def add_secrets(self, values: list[str]) -> None:
        """Mask these values too (a spec's secret worker environment) in what is written."""
        fresh = set(values) - self._secrets
        if fresh:
            self._secrets |= fresh
            self.redact = make_redactor(extra=self._secrets)

    def _text(self, text: str | None, limit: int = MAX_TEXT) -> str | None:
        """Text as it may be stored: secrets masked, then clipped."""
        return clip(self.redact(text), limit)

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _write(self, sql: str, params: Iterable[Any] = ()) -> int:
        with self.conn:
            cursor = self.conn.execute(sql, list(params))
        return cursor.lastrowid or 0
