"""The LLM judge: answers a checklist's `question` items yes/no for one output, each with a
short quoted piece of evidence, through a forced tool call.

All questions for one output go in one call; the instructions and the questions form the
cached prefix, the input and output follow. An answer that is not a clean yes/no (or no
answer at all) is recorded as unanswered (`passed=None`), never guessed. The judge asks for
temperature 0 whenever the API version accepts sampling parameters (see engine/llm.py).
"""

from __future__ import annotations

from typing import Any

from engine import spec as specs
from engine.llm import EPHEMERAL, LLMClient, redact
from engine.model import ItemResult, Usage

TOOL_NAME = "record_answers"
#: Longest evidence kept per answer.
EVIDENCE_CHARS = 300
#: Longest output shown to the judge (the head; the checklist evaluator caps samples too).
OUTPUT_CHARS = 60_000

JUDGE_TOOL = {
    "name": TOOL_NAME,
    "description": "Record a yes/no answer with evidence for every question.",
    "input_schema": {
        "type": "object",
        "properties": {
            "answers": {"type": "array", "items": {"type": "object", "properties": {
                "item": {"type": "string", "description": "the question's name"},
                "answer": {"type": "string", "enum": ["yes", "no"]},
                "evidence": {"type": "string", "description":
                             "a short exact quote from the output (under 25 words) that decides "
                             "the answer, or what is missing"}},
                "required": ["item", "answer", "evidence"]}},
        },
        "required": ["answers"],
    },
}

RULES = """\
You are a strict, consistent judge. You read one output and answer each question below with
yes or no. Answer yes only when the output clearly satisfies the question; when in doubt,
answer no. For each answer give a short exact quote from the output as evidence (or say what is
missing). Judge the output only, never the input. Answer every question, using its name, with
the record_answers tool.

Questions:
"""


def judge_system(questions: list[specs.Item]) -> str:
    return RULES + "\n".join(f"- {q.name}: {q.question}" for q in questions)


def clean_answer(value: Any) -> bool | None:
    """True/False for a clean yes/no; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().strip(".!").strip().lower()
        if word in ("yes", "no"):
            return word == "yes"
    return None


class LLMJudge:
    """Judges outputs against the `question` items of a checklist."""

    def __init__(self, settings: specs.LLMSettings) -> None:
        self.settings = settings
        self.client = LLMClient(settings, role="checklist judge")
        #: Labelled examples appended to the cached prefix (`judge: {examples: labels}`).
        self.examples = ""
        # A judge is deterministic unless the person chose otherwise.
        self.temperature = (settings.temperature if "temperature" in settings.model_fields_set
                            else 0.0)

    async def judge(self, questions: list[specs.Item], sample: str,
                    input: str) -> tuple[list[ItemResult], Usage]:
        shown = sample[:OUTPUT_CHARS] + ("\n…[output cut]" if len(sample) > OUTPUT_CHARS else "")
        turn = (f"<input>\n{input}\n</input>\n\n<output>\n{shown}\n</output>\n\n"
                "Answer every question about this output.")
        reply = await self.client.create(
            system=[{"type": "text", "text": judge_system(questions) + self.examples,
                     "cache_control": EPHEMERAL}],
            messages=[{"role": "user", "content": turn}], tools=[JUDGE_TOOL], tool=TOOL_NAME,
            temperature=self.temperature)
        args = reply.tool_input(TOOL_NAME)
        if args is None or not isinstance(args.get("answers"), list):
            said = " ".join(reply.text().split())[:150] or "nothing"
            why = redact(f"the judge replied without a usable {TOOL_NAME} call: {said!r}")
            return [ItemResult(q.name, None, input, 0, why) for q in questions], reply.usage
        answers: dict[str, dict[str, Any]] = {}
        for entry in args["answers"]:
            if isinstance(entry, dict) and isinstance(entry.get("item"), str):
                answers.setdefault(entry["item"].strip(), entry)
        results = []
        for q in questions:
            entry = answers.get(q.name)
            if entry is None:
                results.append(ItemResult(q.name, None, input, 0, "the judge gave no answer"))
                continue
            passed = clean_answer(entry.get("answer"))
            evidence = " ".join(str(entry.get("evidence") or "").split())[:EVIDENCE_CHARS]
            if passed is None:
                evidence = f"no clean yes/no (answered {str(entry.get('answer'))[:40]!r}): {evidence}"
            results.append(ItemResult(q.name, passed, input, 0, redact(evidence)))
        return results, reply.usage
