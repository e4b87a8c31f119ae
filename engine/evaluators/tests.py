"""The tests evaluator: a test command writes JUnit XML; every test case is a yes/no item."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from engine import spec as specs
from engine.evaluators.metric import last_lines
from engine.model import CRASHED, TIMEOUT, Evaluation, ItemResult, LineSink, Session


def parse_junit(xml: bytes) -> list[ItemResult]:
    """One item per test case; skipped cases are left out, failures carry their message."""
    root = ET.fromstring(xml)
    items = []
    for case in root.iter("testcase"):
        name = "::".join(p for p in (case.get("classname"), case.get("name")) if p)
        if case.find("skipped") is not None:
            continue
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        evidence = "" if problem is None else (problem.get("message") or problem.text or "")[:500]
        items.append(ItemResult(item=name, passed=problem is None, evidence=evidence))
    return items


class TestsEvaluator:
    __test__ = False  # not a pytest class
    direction = "maximize"

    def __init__(self, config: specs.TestsEval) -> None:
        self.config = config

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation:
        cfg = self.config
        result = await session.run(cfg.command, timeout=cfg.timeout_s, on_line=log)
        if result.timed_out:
            return Evaluation(TIMEOUT, error=f"timed out after {cfg.timeout_s:g}s",
                              log_tail=result.output, duration=result.duration)
        xml = await session.read_file(cfg.junit)
        if xml is None:
            return Evaluation(CRASHED, error=f"no JUnit report at {cfg.junit} "
                              f"(exit {result.exit_code})" + last_lines(result.output),
                              log_tail=result.output,
                              duration=result.duration)
        try:
            items = parse_junit(xml)
        except ET.ParseError as exc:
            return Evaluation(CRASHED, error=f"{cfg.junit}: malformed JUnit XML: {exc}",
                              log_tail=result.output, duration=result.duration)
        if not items:
            return Evaluation(CRASHED, error=f"{cfg.junit}: no test cases ran",
                              log_tail=result.output, duration=result.duration)
        passed = sum(1 for i in items if i.passed)
        return Evaluation("ok", score=passed / len(items), items=items,
                          metrics={"tests": len(items), "passed": passed},
                          log_tail=result.output, duration=result.duration)
