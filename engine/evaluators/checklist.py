"""The checklist evaluator: produce samples (a command per input and sample, or an LLM run
of the artifact), answer every yes/no item on each, score = passes / answers.

Deterministic items run here; `question` items go to an LLM judge (engine/evaluators/judge.py).
"""

from __future__ import annotations

import asyncio

from engine import spec as specs
from engine.evaluators.checks import check_command, check_text
from engine.model import CRASHED, TIMEOUT, Evaluation, ItemResult, LineSink, Session, Usage

#: A produced sample longer than this is judged on its head only (and stored truncated).
MAX_SAMPLE = 200_000


class ChecklistEvaluator:
    direction = "maximize"

    def __init__(self, config: specs.ChecklistEval) -> None:
        self.config = config
        self.questions = [i for i in config.items if i.question is not None and not _has_check(i)]
        self.judge = None
        if self.questions:
            from engine.evaluators.judge import LLMJudge

            self.judge = LLMJudge(config.judge or specs.LLMSettings(temperature=0.0))
        self.producer = None
        if isinstance(config.produce, specs.ProduceLLM):
            from engine.evaluators.produce import LLMProducer

            self.producer = LLMProducer(config.produce)

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation:
        cfg = self.config
        jobs = [(inp, s) for inp in cfg.inputs for s in range(cfg.samples)]
        gate = asyncio.Semaphore(cfg.concurrency)
        usage = Usage()

        async def one(inp: str, sample_no: int) -> tuple[list[ItemResult], str | None, str]:
            async with gate:
                sample, problem, tail = await self._produce(session, inp, sample_no, log, usage)
                if problem is not None:
                    return [], problem, tail
                return await self._answer(session, inp, sample_no, sample, usage), None, tail

        outcomes = await asyncio.gather(*(one(inp, s) for inp, s in jobs))
        items = [r for rows, _, _ in outcomes for r in rows]
        problems = [p for _, p, _ in outcomes if p]
        tail = "\n".join(t for _, _, t in outcomes if t)[-8000:]
        if problems:
            status = TIMEOUT if all(p.startswith("timed out") for p in problems) else CRASHED
            return Evaluation(status, error=problems[0], log_tail=tail, items=items, usage=usage)
        answered = [r for r in items if r.passed is not None]
        score = sum(1 for r in answered if r.passed) / len(items) if items else None
        metrics = {"samples": float(len(jobs)), "unanswered": float(len(items) - len(answered))}
        return Evaluation("ok", score=score, items=items, metrics=metrics, log_tail=tail,
                          usage=usage)

    async def _produce(self, session: Session, inp: str, sample_no: int, log: LineSink,
                       usage: Usage) -> tuple[str, str | None, str]:
        produce = self.config.produce
        if self.producer is not None:
            text, cost = await self.producer.produce(session, inp, sample_no)
            usage.add(cost)
            from engine.evaluators.produce import sample_event

            log(sample_event(inp, sample_no, text))  # stored (truncated) for the detail view
            return text[:MAX_SAMPLE], None, ""
        assert isinstance(produce, specs.ProduceCommand)
        command = produce.command.replace("{input}", _shell_quote(inp)).replace(
            "{sample}", str(sample_no))
        result = await session.run(command, timeout=produce.timeout_s, stdin=inp, on_line=log)
        if result.timed_out:
            return "", f"timed out after {produce.timeout_s:g}s (input {inp!r})", result.output
        if result.exit_code != 0:
            return "", f"producing command exited {result.exit_code} (input {inp!r})", result.output
        return result.output[:MAX_SAMPLE], None, ""

    async def _answer(self, session: Session, inp: str, sample_no: int, sample: str,
                      usage: Usage) -> list[ItemResult]:
        results: dict[str, ItemResult] = {}
        for item in self.config.items:
            if item.command is not None:
                ok, evidence = await check_command(item, sample, session)
            elif _has_check(item):
                ok, evidence = check_text(item, sample)
            else:
                continue
            results[item.name] = ItemResult(item.name, ok, inp, sample_no, evidence)
        if self.questions and self.judge is not None:
            judged, cost = await self.judge.judge(self.questions, sample, inp)
            usage.add(cost)
            for r in judged:
                r.input, r.sample = inp, sample_no
                results[r.item] = r
        # Keep the checklist's order whatever answered first.
        return [results[i.name] for i in self.config.items if i.name in results]


def _has_check(item: specs.Item) -> bool:
    return any(getattr(item, k) is not None
               for k in ("regex", "contains", "not_contains", "words", "json_", "command"))


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
