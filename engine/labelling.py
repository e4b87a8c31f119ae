"""Which judged answers a person should label next, and writing their labels.

A label is the person's own yes/no to an item's question about one output (not "the judge is
right"): the labelling screen does not show the judge's answer before the person answers, so
the label is not anchored on it, and `engine/labels.py` compares the two. Labels are written
through `Store.add_label` with the output's text and hash (for re-judging), when the output
is in the store (an LLM producer's outputs are stored as events; a command producer's lines
are its log, so only the judge's evidence is there to read).

The queue is chosen to be informative: answers the judge gave both ways for the same output
(or, without the output, the same item and input of one experiment) come first — that is
where the judge is unsure; then the rest stratified by item and by the judge's answer, taken
round-robin, so every item gets yes and no answers labelled early instead of hundreds of one
item's easy yeses. Answers already labelled are skipped: a session can stop and resume.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from engine.labels import output_hash
from engine.model import UserError
from engine.store import Store

#: The newest experiments with judged answers a queue is drawn from (a long run's first
#: versions are less use to calibrate the judge the run has now).
RECENT_EXPERIMENTS = 200


@dataclass
class Sample:
    """One judged answer to label: (experiment, item, input, sample) and what is known of it."""

    exp_id: int
    item: str
    input: str
    sample: int
    passed: bool | None  # the judge's answer
    evidence: str
    question: str  # the item's question (empty for an item the spec no longer has)
    output: str | None = None
    contested: bool = False  # the judge answered the same output both ways

    @property
    def key(self) -> tuple[int, str, str, int]:
        return (self.exp_id, self.item, self.input, self.sample)


def find_run(store: Store, run_name: str) -> dict[str, Any]:
    run = store.get_run(run_name)
    if run is None:
        names = ", ".join(r["name"] for r in store.runs()) or "none yet"
        raise UserError(f"{store.path}: no run named {run_name!r} (runs: {names})")
    return run


#: An item's deterministic checks (engine/spec.py's Item), as the stored spec names them.
DETERMINISTIC = ("regex", "contains", "not_contains", "words", "json", "json_", "command")


def questions_of(run: dict[str, Any]) -> dict[str, str] | None:
    """The run's judged items and their questions (None: the spec names none, label all)."""
    try:
        spec = json.loads(run.get("spec_json") or "{}")
        items = spec.get("evaluate", {}).get("items") or []
        # An item with a deterministic check beside its question (the question is then
        # its wording) is not judged: nothing there for a person to calibrate.
        found = {i["name"]: i["question"] for i in items if i.get("question")
                 and not any(i.get(k) is not None for k in DETERMINISTIC)}
    except (ValueError, AttributeError, TypeError, KeyError):
        return None
    return found if items else None  # (items all deterministic: nothing to label)


def outputs_of(store: Store, exp_id: int) -> dict[tuple[str, int], str]:
    """The produced outputs an experiment stored, by (input as the event names it, sample)."""
    out: dict[tuple[str, int], str] = {}
    for event in store.events(experiment_id=exp_id, limit=5000):
        head, _, body = (event["line"] or "").partition("\n")
        if not head.startswith("output for input ") or not head.endswith(":"):
            continue
        label, _, rest = head[len("output for input "):].rpartition(", sample ")
        number = rest.split(" ", 1)[0].rstrip(":")
        if number.isdigit() and len(label) >= 2:
            out[(label[1:-1], int(number))] = body
    return out


def event_input(input: str) -> str:
    """An input as `sample_event` names it (flattened, cut at 60, inside repr's quotes)."""
    return repr(" ".join(input.split())[:60])[1:-1]


def queue(store: Store, run: dict[str, Any], limit: int | None = None) -> list[Sample]:
    """The answers still to label, most informative first (see the module's docstring)."""
    questions = questions_of(run)
    labelled = {(r["experiment_id"], r["item"], r["input"], r["sample"])
                for r in store.labels(run["id"])}
    rows = store.judged_answers(run["id"], RECENT_EXPERIMENTS)
    samples: list[Sample] = []
    for r in rows:
        if questions is not None and r["item"] not in questions:
            continue  # a deterministic check: nothing for a person to calibrate
        s = Sample(r["experiment_id"], r["item"], r["input"] or "", r["sample"],
                   None if r["passed"] is None else bool(r["passed"]), r["evidence"] or "",
                   (questions or {}).get(r["item"], ""))
        if s.key not in labelled:
            samples.append(s)
    stored: dict[int, dict[tuple[str, int], str]] = {}
    for s in samples:
        if s.exp_id not in stored:
            stored[s.exp_id] = outputs_of(store, s.exp_id)
        s.output = stored[s.exp_id].get((event_input(s.input), s.sample))
    # Repeated judgements: the same output (or item and input of one experiment) judged twice.
    answers: dict[tuple[Any, ...], set[bool | None]] = defaultdict(set)

    def group(s: Sample) -> tuple[Any, ...]:
        return (s.item, s.input, output_hash(s.output)) if s.output else (
            s.item, s.input, s.exp_id)

    for s in samples:
        answers[group(s)].add(s.passed)
    for s in samples:
        s.contested = len(answers[group(s)]) > 1
    strata: dict[tuple[bool, str, bool | None], list[Sample]] = defaultdict(list)
    for s in reversed(samples):  # newest first within a stratum
        strata[(not s.contested, s.item, s.passed)].append(s)
    ordered: list[Sample] = []
    for contested in (True, False):
        lanes = [v for k, v in sorted(strata.items(), key=lambda kv: (kv[0][1], str(kv[0][2])))
                 if k[0] != contested]
        for layer in zip_longest(*lanes):
            ordered.extend(s for s in layer if s is not None)
    return ordered[:limit] if limit is not None else ordered


def write_label(store: Store, s: Sample, answer: bool, note: str = "") -> None:
    """The person's yes/no for one answer, with the output's text and hash when known."""
    store.add_label(s.exp_id, s.item, s.input, s.sample, answer, note=note, output=s.output,
                    output_hash=output_hash(s.output) if s.output is not None else None)
