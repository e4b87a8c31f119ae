"""The steering doorbell (engine/bell.py): a command's writer rings the store's engines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine import bell, leftovers

pytestmark = pytest.mark.skipif(not bell.supported(), reason="the bell is Linux's")


async def test_a_ring_reaches_every_listener_of_this_engine_and_stops_when_told(
        tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    leftovers.claim(db)  # this engine's record beside the store: how a writer finds it
    heard: list[str] = []
    rung = asyncio.Event()

    def one() -> None:
        heard.append("one")
        rung.set()

    stop_one = bell.listen(one)
    stop_two = bell.listen(lambda: heard.append("two"))
    assert stop_one is not None and stop_two is not None
    assert bell.ring(db) == 1
    await asyncio.wait_for(rung.wait(), 5)
    await asyncio.sleep(0.05)
    assert sorted(heard) == ["one", "two"]
    stop_one()
    stop_two()
    heard.clear()
    bell.ring(db)
    await asyncio.sleep(0.2)
    assert heard == []  # nobody listens: the datagram waits, unread, and nothing runs


def test_ringing_a_store_without_engines_or_with_dead_ones_is_harmless(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert bell.ring(db) == 0  # no records folder at all
    records = leftovers.records_dir(db)
    records.mkdir(parents=True)
    (records / "1.json").write_text(json.dumps({"mark": "gone-engine"}))
    (records / "2.json").write_text("{not json")
    (records / "3.json").write_text(json.dumps({"pid": 3}))  # no mark
    assert bell.ring(db) == 0
