"""The checklist evaluator: produce samples (a command per input and sample, or an LLM run
of the artifact), answer every yes/no item on each, score = passes / answers.

Deterministic items run here; `question` items go to an LLM judge (engine/evaluators/judge.py).
The samples run as tasks of their own: the first one that fails (a producing command, a model
call) cancels its siblings, and what each already cost stays counted. Evidence that cannot
be trusted is never scored as if it could (engine/evaluators/evidence.py): an empty output or
an error page fails every item, and an evaluation whose judge or producer is broken pauses
the run with the cause.
"""

from __future__ import annotations

import asyncio

from engine import spec as specs
from engine.evaluators.checks import check_command, check_margin, check_text
from engine.evaluators.evidence import Health, unusable
from engine.llm import LLMRejected, LLMUnavailable
from engine.model import (
    CRASHED,
    INVALID,
    TIMEOUT,
    Evaluation,
    ItemResult,
    LineSink,
    MutationError,
    Session,
    Usage,
)

#: A produced sample longer than this is judged on its head only (and stored truncated).
MAX_SAMPLE = 200_000

Outcome = tuple[list[ItemResult], str | None, str]


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
        #: Evaluations in a row whose outputs were mostly empty or error pages.
        self.empty_streak = 0
        #: Evaluations finished (the first one's broken evidence pauses at once).
        self.evaluations = 0

    async def evaluate(self, session: Session, log: LineSink) -> Evaluation:
        cfg = self.config
        jobs = [(inp, s) for inp in cfg.inputs for s in range(cfg.samples)]
        batch = cfg.judge_batch if self.questions else 1
        # Samples of one input judged together (judge_batch), else each on its own.
        groups = [(inp, list(range(start, min(start + batch, cfg.samples))))
                  for inp in cfg.inputs for start in range(0, cfg.samples, batch)]
        gate = asyncio.Semaphore(cfg.concurrency)
        usage = Usage()
        health = Health(len(jobs))
        failed: list[bool] = []  # set before the gate is released, so no sibling starts after

        async def make(inp: str, sample_no: int) -> tuple[str, str | None, str]:
            async with gate:
                if failed:
                    return "", "", ""  # (cancelled in a moment)
                try:
                    sample, problem, tail = await self._produce(session, inp, sample_no, log,
                                                                usage, health)
                except Exception:
                    failed.append(True)
                    raise
                if problem is not None:
                    failed.append(True)
                return sample, problem, tail

        async def one(inp: str, numbers: list[int]) -> Outcome:
            made = await asyncio.gather(*(make(inp, n) for n in numbers))
            tail = "\n".join(t for _, _, t in made if t)
            problem = next((p for _, p, _ in made if p is not None), None)
            if problem is not None or failed:
                return [], problem, tail
            samples = [(n, sample) for n, (sample, _, _) in zip(numbers, made, strict=True)]
            return await self._answer(session, inp, samples, usage), None, tail

        outcomes: list[Outcome] = []
        failure: BaseException | str | None = None
        tasks = [asyncio.ensure_future(one(inp, numbers)) for inp, numbers in groups]
        pending = set(tasks)
        try:
            while pending and failure is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        failure = failure or task.exception()
                        continue
                    outcomes.append(task.result())
                    if task.result()[1]:
                        failure = failure or task.result()[1]
        finally:
            # The first failure decides the evaluation: its siblings are cancelled (a stop
            # cancels them all), and the usage they already added stays in `usage`.
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        tail = "\n".join(t for _, _, t in outcomes if t)[-8000:]
        items = [r for rows, _, _ in outcomes for r in rows]
        if isinstance(failure, LLMUnavailable):  # an outage: the loop pauses the run
            failure.usage = usage
            raise failure
        if isinstance(failure, LLMRejected):  # this version made a request the API refuses
            return Evaluation(INVALID, error=str(failure), log_tail=tail, items=items,
                              usage=usage)
        if isinstance(failure, BaseException):  # any other exception is this outcome's
            reason = str(failure) if isinstance(failure, MutationError) else \
                f"{type(failure).__name__}: {failure}"
            return Evaluation(CRASHED, error=reason[:500], log_tail=tail, items=items,
                              usage=usage)
        if failure is not None:
            status = TIMEOUT if failure.startswith("timed out") else CRASHED
            return Evaluation(status, error=failure, log_tail=tail, items=items, usage=usage)
        answered = [r for r in items if r.passed is not None]
        score = sum(1 for r in answered if r.passed) / len(items) if items else None
        metrics = {"samples": float(len(jobs)), "unanswered": float(len(items) - len(answered)),
                   **health.metrics()}
        evaluation = Evaluation("ok", score=score, items=items, metrics=metrics, log_tail=tail,
                                usage=usage)
        return unusable(self, evaluation, health, items)

    async def _produce(self, session: Session, inp: str, sample_no: int, log: LineSink,
                       usage: Usage, health: Health) -> tuple[str, str | None, str]:
        produce = self.config.produce
        if self.producer is not None:
            text, cost, stop = await self.producer.produce(session, inp, sample_no)
            usage.add(cost)
            from engine.evaluators.produce import sample_event

            log(sample_event(inp, sample_no, text, stop))  # stored (bounded) for the detail view
            if stop == "max_tokens":
                health.truncated += 1
                text += ("\n…[the producer stopped here: it reached max_tokens "
                         f"({self.producer.config.max_tokens})]")
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

    async def _answer(self, session: Session, inp: str, samples: list[tuple[int, str]],
                      usage: Usage) -> list[ItemResult]:
        """Every item's answer for each (sample number, output) of one input."""
        from engine.evaluators.evidence import worthless

        results: dict[int, dict[str, ItemResult]] = {n: {} for n, _ in samples}
        to_judge: list[tuple[int, str]] = []
        for n, sample in samples:
            why = worthless(sample)
            if why is not None:
                # Nothing to judge: every item fails (an empty page passes `words: {max}` and
                # `not_contains`, and must not make a version look good); no judge call is paid.
                results[n] = {i.name: ItemResult(i.name, False, inp, n, why)
                              for i in self.config.items}
                continue
            for item in self.config.items:
                if item.command is not None:
                    ok, evidence = await check_command(item, sample, session)
                elif _has_check(item):
                    ok, evidence = check_text(item, sample)
                else:
                    continue
                results[n][item.name] = ItemResult(item.name, ok, inp, n, evidence,
                                                   check_margin(item, sample))
            to_judge.append((n, sample))
        if self.questions and self.judge is not None and to_judge:
            judged, cost = await self.judge.judge_many(self.questions, [t for _, t in to_judge],
                                                       inp)
            usage.add(cost)
            for (n, _), rows in zip(to_judge, judged, strict=True):
                for r in rows:
                    r.input, r.sample = inp, n
                    results[n][r.item] = r
        # Keep the checklist's order whatever answered first.
        return [results[n][i.name] for n, _ in samples for i in self.config.items
                if i.name in results[n]]


def _has_check(item: specs.Item) -> bool:
    return any(getattr(item, k) is not None
               for k in ("regex", "contains", "not_contains", "words", "json_", "command"))


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
