"""The tests evaluator: a test command writes JUnit XML; every test case is a yes/no item.

The report is parsed as a stream (each test case is read and dropped), so a report of
hundreds of megabytes costs little memory; past MAX_REPORT_BYTES it is refused. The score
counts every test case; at most MAX_ITEMS are kept as items (failures first, then passes in
the report's order), and the log says how many were left out.
"""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from engine import spec as specs
from engine.evaluators.metric import last_lines
from engine.model import CRASHED, TIMEOUT, Evaluation, ItemResult, LineSink, Session

#: Largest JUnit report read.
MAX_REPORT_BYTES = 512 * 1024 * 1024
#: Test cases kept as items per experiment (each is a stored row).
MAX_ITEMS = 2_000
#: Longest failure message kept as an item's evidence.
EVIDENCE_CHARS = 500


class ReportTooBig(Exception):
    """The report is larger than MAX_REPORT_BYTES."""


@dataclass
class Report:
    """What a JUnit report says: counts over every case, and the items kept."""

    items: list[ItemResult] = field(default_factory=list)
    total: int = 0
    passed: int = 0

    @property
    def left_out(self) -> int:
        return self.total - len(self.items)


class _Bounded(io.RawIOBase):
    """A binary reader that refuses to read past `limit` bytes."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self.inner, self.limit, self.read_so_far = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.inner.read(len(buffer))
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise ReportTooBig(f"larger than {self.limit // (1024 * 1024)} MB")
        buffer[:len(data)] = data
        return len(data)


def parse_junit(source: bytes | BinaryIO, max_items: int = MAX_ITEMS,
                limit: int = MAX_REPORT_BYTES,
                counts: Callable[[str], bool] | None = None) -> Report:
    """One item per test case (skipped ones left out, and those `counts` refuses: the other
    side of a held-out split), failures carrying their message."""
    if isinstance(source, bytes | bytearray):
        if len(source) > limit:
            raise ReportTooBig(f"larger than {limit // (1024 * 1024)} MB")
        source = io.BytesIO(source)
    report = Report()
    passes: list[ItemResult] = []
    failures: list[ItemResult] = []
    stack: list[ET.Element] = []
    for event, elem in ET.iterparse(_Bounded(source, limit), events=("start", "end")):
        if event == "start":
            stack.append(elem)
            continue
        stack.pop()
        if elem.tag != "testcase":
            if elem.tag == "testsuite":
                elem.clear()
            continue
        if elem.find("skipped") is None:
            name = "::".join(p for p in (elem.get("classname"), elem.get("name")) if p)
            if counts is not None and not counts(name):
                elem.clear()
                if stack:
                    stack[-1].remove(elem)
                continue
            problem = elem.find("failure")
            if problem is None:
                problem = elem.find("error")
            report.total += 1
            if problem is None:
                report.passed += 1
                if len(passes) < max_items:
                    passes.append(ItemResult(item=name, passed=True))
            elif len(failures) < max_items:
                evidence = (problem.get("message") or problem.text or "")[:EVIDENCE_CHARS]
                failures.append(ItemResult(item=name, passed=False, evidence=evidence))
        elem.clear()  # the case is read: drop it and its output
        if stack:
            stack[-1].remove(elem)
    report.items = (failures + passes)[:max_items]
    return report


class TestsEvaluator:
    __test__ = False  # not a pytest class
    direction = "maximize"

    def __init__(self, config: specs.TestsEval, held_out: bool = False) -> None:
        self.config = config
        #: Score only the held-out tests (`holdout:` pattern) instead of only the others.
        self.held_out = held_out

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation:
        cfg = self.config
        result = await session.run(cfg.command, timeout=cfg.timeout_s, on_line=log)
        if result.timed_out:
            return Evaluation(TIMEOUT, error=f"timed out after {cfg.timeout_s:g}s",
                              log_tail=result.output, duration=result.duration)
        opener = getattr(session, "open_file", None)  # a local file is parsed as it is read
        handle = opener(cfg.junit) if opener is not None else None
        try:
            xml = handle if handle is not None else await session.read_file(cfg.junit)
            if xml is None:
                return Evaluation(CRASHED, error=f"no JUnit report at {cfg.junit} "
                                  f"(exit {result.exit_code})" + last_lines(result.output),
                                  log_tail=result.output, duration=result.duration)
            counts = None
            if cfg.holdout is not None:  # held-out tests never decide a keep (engine/holdout.py)
                from engine.splits import held_out_test

                def counts(name: str) -> bool:
                    return held_out_test(cfg.holdout, name) == self.held_out
            # big ones take a while
            report = await asyncio.to_thread(parse_junit, xml, MAX_ITEMS, MAX_REPORT_BYTES, counts)
        except (ET.ParseError, ReportTooBig) as exc:
            why = "malformed JUnit XML" if isinstance(exc, ET.ParseError) else "report too big"
            return Evaluation(CRASHED, error=f"{cfg.junit}: {why}: {exc}",
                              log_tail=result.output, duration=result.duration)
        finally:
            if handle is not None:
                handle.close()
        if not report.total:
            return Evaluation(CRASHED, error=f"{cfg.junit}: no test cases ran" +
                              (" (of the held-out ones)" if self.held_out else ""),
                              log_tail=result.output, duration=result.duration)
        tail = result.output
        metrics = {"tests": report.total, "passed": report.passed}
        if report.left_out:
            metrics["items_left_out"] = report.left_out
            note = (f"[autoresearch] {report.total} test cases: {len(report.items)} kept as "
                    f"items (failures first), {report.left_out} left out; the score counts all")
            log(note)
            tail = f"{tail}\n{note}" if tail else note
        return Evaluation("ok", score=report.passed / report.total, items=report.items,
                          metrics=metrics, log_tail=tail, duration=result.duration)
