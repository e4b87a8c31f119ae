"""The prompt the `llm` and `agent` mutators share: what to change, how it is scored, what
failed, what was tried, what the person said.

It comes in four parts, ordered from most to least stable so prompt caching pays off:
`stable` (instructions, the checklist or metric, playbooks: fixed for the whole run),
`artifact` (the best version's target files and failing items: fixed until a keep), `history` (the changelog,
one block per attempt, append-only: this round's history is the next round's prefix, so
it is read from the cache and only the new attempts are written), and `turn` (failing
items, banned and pinned ideas, what is in flight, guidance: new every round).

The newest attempts are shown whole — verdict, reason, rationale and diff — so the mutator
can see what exactly was tried and not repeat a near-identical edit; older ones are one line
each. Where "newest" ends moves in steps of `COMPACT_STEP` attempts, and the whole ones stay
within `HISTORY_TOKENS`, so the history is rewritten (a cache write) only once every few
rounds, never every round.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from engine import spec as specs
from engine.model import BASELINE, INTERRUPTED, PINNED, RUNNING, VETOED, Proposal

#: Longest diff shown for one recent experiment.
DIFF_CHARS = 1500
#: Token budget of the attempts shown whole (about 4 characters a token).
HISTORY_TOKENS = 6000
#: The boundary between one-line and whole attempts moves this many attempts at a time.
COMPACT_STEP = 8
#: Most older experiments listed one line each; beyond this they are only counted.
OLDER_LINES = 80
#: Evidence quotes shown per failing item.
EVIDENCE_PER_ITEM = 3
#: Longest playbook text included.
PLAYBOOK_CHARS = 8000

RULES = """\
You improve an artifact by hill climbing. Each round you propose ONE small, concrete change to
the target files. The changed version is scored; it is kept only if the score improves,
otherwise it is reverted and recorded in the changelog you see below.

Rules:
- One small, concrete change per round: a specific edit you can describe in one line. Several
  changes at once make it impossible to tell which one helped.
- Aim the change at a failing checklist item (read the judge's evidence) or at the metric.
- Never repeat an attempt that was reverted, and never try a BANNED idea or anything like it.
- Never undo a change marked KEEP.
- Follow the guidance from the person steering the run, if any.
- Edit only the target files ({targets}). Every other file is read-only; an edit to one is
  refused and the round is wasted.
- Leave everything else exactly as it is: no reformatting, renaming or rewriting of unrelated
  parts.

Good changes (specific, one idea each):
- "Put the figure from the first bullet ('onboarding cut from 14 days to 3') into the headline"
- "Move the 'Start your free trial' link from the closing paragraph to the end of the first"
- "Replace the nested loop in find_pairs() with a set lookup"
- "Add a rule: the subject line has at most 50 characters"
Bad changes (vague, sprawling or untestable):
- "Make it more engaging" or "Improve clarity" (no concrete edit)
- "Rewrite the whole page in a better style" (many changes at once)
- "Tweak some wording" (not specific)
- "Add more detail everywhere" (not one idea)
"""


@dataclass
class Prompt:
    """The parts of the mutator's prompt, most stable first."""

    stable: str
    artifact: str
    #: The changelog: append-only blocks (a header, the one-line older attempts, then one
    #: block per attempt shown whole).
    history: list[str]
    turn: str

    def user(self) -> str:
        """The user turn as one text: history, then this round's part."""
        return "\n\n".join([*self.history, self.turn])

    def whole(self) -> str:
        return "\n\n".join((self.stable, self.artifact, self.user()))


def build_prompt(spec: specs.Spec, proposal: Proposal, *, recent: int = 20,
                 playbooks: list[tuple[str, str]] = (), finish: str = "") -> Prompt:
    """Assemble the prompt for one proposal. `playbooks` are (name, text) pairs; `finish` is
    the closing request (how to answer: a tool call, or editing files in place)."""
    stable = [RULES.format(targets=", ".join(spec.target.files)).rstrip(), describe_evaluation(spec)]
    if spec.description:
        stable.append(f"The run's purpose: {spec.description}")
    if playbooks:
        stable.append("Lessons from earlier runs (playbooks). Prefer kinds of change that "
                      "helped before; avoid those that never did:")
        for name, text in playbooks:
            stable.append(f'<playbook name="{name}">\n{_clip(text.strip(), PLAYBOOK_CHARS)}\n'
                          "</playbook>")
    artifact = ["The target files, as in the best version so far. Search text in an edit must "
                "be copied exactly from here."]
    if not proposal.parent_is_best:  # (beam and frontier search; engine/search.py)
        artifact[0] = (f"The target files, as in version #{proposal.parent}, the version this "
                       "change builds on (one of several the search keeps alive). Search text "
                       "in an edit must be copied exactly from here.")
    for path in spec.target.files:
        if path in proposal.best_files:
            artifact.append(f'<file path="{path}">\n{proposal.best_files[path]}</file>')
    # The best version's failing items change only when the best version does: they belong
    # with its files, in the part cached until a keep.
    failing = _failing(proposal.failing_items)
    if failing:
        artifact.append(failing)
    history, marks = _changelog(proposal.changelog, recent)
    turn = [marks, _score_line(spec, proposal), _siblings(proposal),
            _guidance(proposal.guidance), finish or "Now propose one small, concrete change."]
    return Prompt("\n\n".join(stable), "\n\n".join(artifact), history,
                  "\n\n".join(t for t in turn if t))


def _siblings(proposal: Proposal) -> str:
    """What other children of the version being edited tried (tree search only)."""
    if not proposal.siblings:
        return ""
    lines = [f"Changes already tried on version #{proposal.parent} (its other children); "
             "try something different:"]
    for row in proposal.siblings[-10:]:
        score = "-" if row.get("score") is None else f"{row['score']:.4g}"
        lines.append(f"- #{row['id']} {row.get('verdict')}: "
                     f"{_clip(' '.join(str(row.get('description') or '').split()), 200)} "
                     f"(score {score})")
    return "\n".join(lines)


def describe_evaluation(spec: specs.Spec) -> str:
    """How a version is scored, in words a model (or a person) can act on."""
    ev = spec.evaluate
    if isinstance(ev, specs.MetricEval):
        better = "lower" if ev.direction == "minimize" else "higher"
        text = (f"Scoring: the command `{ev.command}` is run on the changed version and the "
                f"metric `{ev.metric}` is read from its output; {better} is better.")
        if ev.guard:
            text += f" The change is kept only if `{ev.guard}` still succeeds."
        return text
    if isinstance(ev, specs.TestsEval):
        return (f"Scoring: the test suite `{ev.command}` is run; the score is the share of tests "
                "that pass (each test is a yes/no item).")
    produce = ev.produce
    if isinstance(produce, specs.ProduceLLM):
        how = (f"the file `{produce.system_file}` is given to a model as its system prompt, with "
               "each input below as the user's message")
    else:
        how = f"the command `{produce.command}` is run for each input below"
    lines = [f"Scoring: outputs are produced from the changed version ({how}; {ev.samples} "
             f"sample{'s' if ev.samples > 1 else ''} per input). Each output is checked against "
             "this checklist of yes/no items; the score is the share of yes answers:"]
    for item in ev.items:
        lines.append(f"- {item.name}: {describe_item(item)}")
    shown = [i for i in ev.inputs if i][:10]
    if shown:
        lines.append("Inputs:")
        lines.extend(f"- {_clip(' '.join(i.split()), 300)}" for i in shown)
    return "\n".join(lines)


def describe_item(item: specs.Item) -> str:
    if item.regex is not None:
        check = f"the output matches the regular expression /{item.regex}/"
    elif item.contains is not None:
        check = f"the output contains {item.contains!r}"
    elif item.not_contains is not None:
        check = f"the output does not contain {item.not_contains!r}"
    elif item.words is not None:
        lo, hi = item.words.min, item.words.max
        check = ("the output has " + (f"at least {lo} " if lo is not None else "")
                 + ("and " if lo is not None and hi is not None else "")
                 + (f"at most {hi} " if hi is not None else "") + "words")
    elif item.json_ is not None:
        j = item.json_
        bounds = [f"= {j.equals!r}" if j.equals is not None else "",
                  f"≥ {j.min:g}" if j.min is not None else "",
                  f"≤ {j.max:g}" if j.max is not None else ""]
        check = f"the output's JSON field `{j.path}` is {' and '.join(b for b in bounds if b)}"
    elif item.command is not None:
        check = f"the command `{item.command}` accepts the output"
    else:
        return f"{item.question} (judged by a model)"
    return f"{item.question} ({check})" if item.question else check


def _score_line(spec: specs.Spec, proposal: Proposal) -> str:
    if proposal.best_score is None:
        return ""
    direction = "lower is better" if spec.direction == "minimize" else "higher is better"
    return f"Best score so far: {proposal.best_score:.4g} ({direction})."


def _failing(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_item[row["item"]].append(row)
    lines = ["Checklist items the best version fails, with the judge's evidence:"]
    for item, failures in by_item.items():
        unclear = sum(1 for r in failures if r.get("passed") is None)
        note = f", {unclear} without a clear answer" if unclear else ""
        lines.append(f"- {item}: failed on {len(failures)} output(s){note}")
        for row in failures[:EVIDENCE_PER_ITEM]:
            where = f" (input {_clip(' '.join((row.get('input') or '').split()), 80)!r})" \
                if row.get("input") else ""
            lines.append(f"    evidence{where}: {_clip(row.get('evidence') or '-', 300)}")
    return "\n".join(lines)


def _mark(row: dict[str, Any]) -> str:
    if row["verdict"] == VETOED and not (row.get("reason") or "").startswith("built on vetoed"):
        return " [BANNED]"
    if row["verdict"] == PINNED:
        return " [KEEP]"
    if row.get("kind") == "imported":  # from results.tsv or pi's log: tried before this run
        return " [imported]"
    return ""


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    value = round(value, 9) + 0.0  # no -1.11e-16 from float noise (and no -0)
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _changelog(rows: list[dict[str, Any]], recent: int) -> tuple[list[str], str]:
    """The append-only history blocks, and this round's marks (banned, kept, in flight)."""
    if not rows:
        return [], ""
    marks: list[str] = []
    banned = [r for r in rows if _mark(r) == " [BANNED]"]
    pinned = [r for r in rows if r["verdict"] == PINNED and r["kind"] != BASELINE]
    if banned:
        marks.append("BANNED ideas (vetoed by the person): never try these or anything like them:")
        marks.extend(f"- #{r['id']}: {r['description']}" for r in banned)
    if pinned:
        marks.append("KEEP (pinned by the person): never undo these:")
        marks.extend(f"- #{r['id']}: {r['description']}" for r in pinned)
    # Settled attempts only: everything before the first one still running (its verdict,
    # and so its text, is not final yet).
    first_running = next((i for i, r in enumerate(rows) if r["verdict"] == RUNNING), len(rows))
    done = rows[:first_running]
    flying = [r for r in rows[first_running:] if r["verdict"] == RUNNING and r["kind"] != BASELINE]
    later = [r for r in rows[first_running:] if r["verdict"] != RUNNING]
    if flying:
        marks.append("Being evaluated right now (do not propose the same):")
        marks.extend(f"- #{r['id']}: {r['description']}" for r in flying)
    if later:
        marks.append("Finished meanwhile:")
        marks.extend(_whole(r) for r in later)
    cut = _compact_point(done, recent)
    older, newer = done[:cut], done[cut:]
    history = ["Changelog of this run, oldest first:"]
    if older:
        lines = [f"Older attempts ({len(older)}), one line each:"]
        listed = older[-OLDER_LINES:]
        if len(older) > len(listed):
            lines.append(f"- … attempts before #{listed[0]['id']} not listed")
        lines.extend(f"- #{r['id']} {r['verdict']}{_mark(r)} {_num(r['delta'], True)}: "
                     f"{_clip(r['description'] or '', 140)}" for r in listed)
        history.append("\n".join(lines))
    if newer:
        history.append("Recent attempts, whole (verdict, reason, rationale, diff), oldest first:")
        history.extend(_whole(r) for r in newer)
    return history, "\n".join(marks)


def _compact_point(done: list[dict[str, Any]], recent: int) -> int:
    """How many of the settled attempts are shown one line each: a multiple of COMPACT_STEP
    (the smallest that keeps the whole ones within `recent` + COMPACT_STEP and within
    HISTORY_TOKENS), so it moves only every few rounds and the history stays a prefix."""
    if recent <= 0:
        return len(done)
    cut = 0
    while cut < len(done):
        whole = done[cut:]
        size = sum(len(_whole(r)) for r in whole) // 4
        if len(whole) <= recent + COMPACT_STEP - 1 and size <= HISTORY_TOKENS:
            break
        cut += COMPACT_STEP
    return min(cut, len(done))


def _whole(r: dict[str, Any]) -> str:
    head = (f"#{r['id']} round {r['round']} · {r['verdict']}{_mark(r)} · score "
            f"{_num(r['score'])} ({_num(r['delta'], True)})")
    if r.get("reason"):
        head += f" · {_clip(r['reason'], 200)}"
    if r["verdict"] == INTERRUPTED:
        head += " · not scored (a stop or an outage): it may be proposed again"
    lines = [head, f"    change: {r['description']}"]
    if r.get("rationale"):
        lines.append(f"    why: {_clip(' '.join(r['rationale'].split()), 400)}")
    if r.get("diff"):
        diff = _clip(r["diff"].rstrip("\n"), DIFF_CHARS)
        lines.append("    diff:\n" + "\n".join("      " + line for line in diff.splitlines()))
    return "\n".join(lines)


class DiffCache:
    """Diffs of recent attempts, read from the store once each (a diff never changes)."""

    def __init__(self, recent: int) -> None:
        self.recent = recent
        self.diffs: dict[int, str] = {}

    def fill(self, rows: list[dict[str, Any]], read: Any) -> None:
        """Give the newest rows (those that may be shown whole) their `diff` (`read(id)`: an
        experiment's row, handed over by the loop)."""
        for row in rows[-(self.recent + COMPACT_STEP):]:
            if row.get("diff") is not None or row["verdict"] == RUNNING:
                continue
            if row["id"] not in self.diffs:
                full = read(row["id"]) or {}
                self.diffs[row["id"]] = full.get("diff") or ""
            row["diff"] = self.diffs[row["id"]]


def _guidance(notes: list[str]) -> str:
    notes = [n.strip() for n in notes if n and n.strip()]
    if not notes:
        return ""
    return ("Guidance from the person steering this run (follow it; newest last):\n"
            + "\n".join(f"- {n}" for n in notes))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
