"""Evidence a checklist must not be scored on: empty outputs, error pages, outputs the
producer cut at max_tokens, and answers the judge never gave.

One bad sample fails its items (`worthless`). When most of an evaluation is bad, the
judge or the producer is broken, not the candidate: `unusable` raises EvidenceBroken, which
the loop records as a crash with the cause and turns into a paused run with an alert
(engine/outage.py). Empty outputs and error pages can also be a candidate's own doing (it
emptied the page), so they pause the run only at the first evaluation or when two
evaluations in a row are mostly empty; the judge's silence and truncation pause at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.llm import LLMUnavailable
from engine.model import CRASHED, Evaluation, ItemResult

if TYPE_CHECKING:
    from engine.evaluators.checklist import ChecklistEvaluator

_HTML = re.compile(r"\s*<(!doctype\s+html|html)\b", re.IGNORECASE)
_ERROR_TITLE = re.compile(r"<title[^>]*>([^<]*\b(?:[45]\d\d|error|not found|unavailable|"
                          r"bad gateway|forbidden|denied)\b[^<]*)</title>", re.IGNORECASE)


class EvidenceBroken(LLMUnavailable):
    """Most of an evaluation's evidence is unusable: the run pauses with this cause."""

    def __init__(self, text: str, evaluation: Evaluation) -> None:
        super().__init__(text, "evidence")
        self.evaluation = evaluation
        self.usage = evaluation.usage


@dataclass
class Health:
    """Counts of bad samples in one evaluation."""

    samples: int
    truncated: int = 0

    def metrics(self) -> dict[str, float]:
        return {"truncated": float(self.truncated)} if self.truncated else {}


def worthless(sample: str) -> str | None:
    """Why a produced output cannot be judged (empty, an error page), or None."""
    if not sample.strip():
        return "the output is empty"
    head = sample[:4000]
    title = _ERROR_TITLE.search(head)
    if _HTML.match(head) and title:
        return f"the output is an error page ({' '.join(title[1].split())[:80]!r})"
    return None


def _most(bad: int, total: int) -> bool:
    return total > 0 and bad * 2 > total


def unusable(evaluator: ChecklistEvaluator, evaluation: Evaluation, health: Health,
             items: list[ItemResult]) -> Evaluation:
    """The evaluation, or EvidenceBroken when the producer or judge is broken."""
    first = evaluator.evaluations == 0
    evaluator.evaluations += 1
    samples = {(r.input, r.sample): r.evidence for r in items}
    empty = [why for why in samples.values() if why.startswith(("the output is empty",
                                                                "the output is an error page"))]
    evaluator.empty_streak = evaluator.empty_streak + 1 if _most(len(empty), health.samples) \
        else 0
    names = {q.name for q in evaluator.questions}
    judged = [r for r in items if r.item in names]
    unanswered = [r for r in judged if r.passed is None]
    cause = None
    if _most(len(unanswered), len(judged)):
        example = unanswered[0].evidence
        cause = (f"the judge left {len(unanswered)} of {len(judged)} answers unanswered "
                 f"(e.g. {example[:160]!r}); check the judge's model and max_tokens")
    elif _most(health.truncated, health.samples) and evaluator.producer is not None:
        cause = (f"the producer stopped at max_tokens ({evaluator.producer.config.max_tokens}) "
                 f"on {health.truncated} of {health.samples} samples, so truncated outputs "
                 "would be judged; raise evaluate.produce.max_tokens")
    elif evaluator.empty_streak and (evaluator.empty_streak >= 2 or first):
        cause = (f"{len(empty)} of {health.samples} produced outputs are unusable "
                 f"({empty[0]}); check the producer")
    if cause is None:
        return evaluation
    broken = Evaluation(CRASHED, error=f"unusable evidence: {cause}", items=items,
                        metrics=evaluation.metrics, log_tail=evaluation.log_tail,
                        usage=evaluation.usage)
    raise EvidenceBroken(f"paused: unusable evidence: {cause}", broken)
