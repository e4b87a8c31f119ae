"""Evaluators score a candidate: `metric` (a command prints a number), `checklist` (yes/no
items over produced samples), `tests` (JUnit XML, each test a yes/no item)."""

from __future__ import annotations

from engine import spec as specs
from engine.model import Evaluator


def build_evaluator(spec: specs.Spec) -> Evaluator:
    ev = spec.evaluate
    if isinstance(ev, specs.MetricEval):
        from engine.evaluators.metric import MetricEvaluator

        return MetricEvaluator(ev)
    if isinstance(ev, specs.TestsEval):
        from engine.evaluators.tests import TestsEvaluator

        return TestsEvaluator(ev)
    from engine.evaluators.checklist import ChecklistEvaluator

    return ChecklistEvaluator(ev)
