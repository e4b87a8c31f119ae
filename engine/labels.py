"""Judge calibration: is the judge right, item by item?

A person labels a judge's answers right or wrong (store `labels`: experiment, item, input,
sample, the output's hash and text, the person's yes/no, a note). Against those labels each
`question` item gets the judge's true-positive rate (it says yes when the person does), its
true-negative rate, their Wilson intervals, the agreement and the label count, and the most
recent disagreements quoted. An item with at least `MIN_LABELS` labels whose agreement is below
`LOW_AGREEMENT` is flagged: its score is not evidence.

`judge: {examples: labels}` puts labelled disagreements in the judge's cached prompt prefix as
few-shot examples (`label_examples`); `judge-report RUN --rejudge` asks the spec's judge again
on every labelled output and prints the agreement before and after.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from engine import spec as specs
from engine.model import UserError
from engine.store import Store
from engine.text import printable

#: Labels an item needs before low agreement flags it.
MIN_LABELS = 20
#: Agreement below this (with enough labels) flags an item.
LOW_AGREEMENT = 0.8
#: Labelled disagreements shown per item, and put in a judge's prompt at most.
QUOTED = 3
EXAMPLES = 12


def output_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()[:16]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (0..1 for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return max(0.0, (centre - spread) / denom), min(1.0, (centre + spread) / denom)


@dataclass
class Rate:
    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def show(self) -> str:
        if not self.n:
            return "    -  (no labels)      "
        lo, hi = self.interval
        return f"{self.k / self.n:5.2f} [{lo:.2f}, {hi:.2f}] n={self.n:<3}"


@dataclass
class ItemReport:
    """One item's judge against the person's labels."""

    item: str
    tp: Rate  # judge yes | person yes
    tn: Rate  # judge no | person no
    agree: int = 0
    labels: int = 0
    unanswered: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def agreement(self) -> float | None:
        answered = self.labels - self.unanswered
        return self.agree / answered if answered else None

    @property
    def flagged(self) -> bool:
        a = self.agreement
        return self.labels >= MIN_LABELS and a is not None and a < LOW_AGREEMENT


def item_reports(rows: list[dict[str, Any]], answers: dict[int, bool | None] | None = None,
                 ) -> list[ItemReport]:
    """Per item, the judge's answers (`passed`, or `answers` by label id) against the labels."""
    out: dict[str, ItemReport] = {}
    for row in rows:
        rep = out.setdefault(row["item"], ItemReport(row["item"], Rate(0, 0), Rate(0, 0)))
        said = row["passed"] if answers is None else answers.get(row["id"])
        said = None if said is None else bool(said)
        truth = bool(row["label"])
        rep.labels += 1
        if said is None:
            rep.unanswered += 1
            continue
        rate = rep.tp if truth else rep.tn
        rate.n += 1
        rate.k += said == truth
        rep.agree += said == truth
        if said != truth:
            rep.disagreements.append(row)
    return list(out.values())


def report_lines(run: dict[str, Any], reports: list[ItemReport]) -> list[str]:
    lines = [f"judge report: {run['name']} ({sum(r.labels for r in reports)} labels)",
             f"{'item':<20} {'true positive':<25} {'true negative':<25} agreement  labels"]
    for r in reports:
        a = r.agreement
        flag = "  LOW: its score is not evidence" if r.flagged else ""
        lines.append(f"{printable(r.item)[:20]:<20} {r.tp.show():<25} {r.tn.show():<25} "
                     f"{'-' if a is None else f'{a:.2f}':>9}  {r.labels:>6}{flag}")
    for r in reports:
        for row in r.disagreements[-QUOTED:]:
            said = "yes" if row["passed"] else "no"
            person = "yes" if row["label"] else "no"
            quote = " ".join(printable(row["evidence"] or "").split())[:120]
            note = f" · note: {printable(row['note'])[:80]}" if row["note"] else ""
            lines.append(f"  {printable(r.item)}: #{row['experiment_id']} input "
                         f"{printable(row['input'])[:30]!r} sample {row['sample']}: judge {said}, "
                         f"person {person} — {quote!r}{note}")
    return lines


def flagged_items(store: Store, run_id: int) -> list[ItemReport]:
    return [r for r in item_reports(store.labels(run_id)) if r.flagged]


def flag_message(flagged: list[ItemReport]) -> str:
    names = ", ".join(f"{r.item} ({r.agreement:.0%} of {r.labels})" for r in flagged)
    return f"judge disagrees with the labels on {names}: those scores are not evidence"


# ---------------------------------------------------------------- examples and re-judging


def label_examples(store: Store, run_name: str) -> str:
    """Labelled disagreements of a run, as few-shot examples for its judge's cached prefix."""
    run = store.get_run(run_name)
    if run is None:
        return ""
    rows = [r for r in store.labels(run["id"])
            if r["passed"] is not None and bool(r["passed"]) != bool(r["label"]) and r["output"]]
    if not rows:
        return ""
    parts = ["\nExamples a person checked (the right answers; judge these cases the same way):"]
    for r in rows[-EXAMPLES:]:
        parts.append(f"<example item=\"{r['item']}\" answer=\"{'yes' if r['label'] else 'no'}\">"
                     f"\n{r['output'][:1500]}\n</example>" + (f" (why: {r['note']})"
                                                               if r["note"] else ""))
    return "\n".join(parts)


def prime_judges(spec: specs.Spec, store: Store, evaluators: list[Any]) -> str | None:
    """At a run's start: give its judges the labelled examples (`judge: {examples: labels}`);
    returns the alert for items the labels say the judge gets wrong, if any."""
    ev = spec.evaluate
    if not isinstance(ev, specs.ChecklistEval):
        return None
    if ev.judge is not None and ev.judge.examples == "labels":
        text = label_examples(store, spec.name)
        for evaluator in evaluators:
            judge = getattr(evaluator, "judge", None)
            if judge is not None:
                judge.examples = text
    run = store.get_run(spec.name)
    flagged = flagged_items(store, run["id"]) if run is not None else []
    return flag_message(flagged) if flagged else None


def check_labels(db: Path, paths: list[str], out: TextIO | None = None) -> None:
    """`check` with a store: warn of items whose judge the labels disagree with."""
    out = out if out is not None else sys.stderr  # now's, not import's
    if not db.exists():
        return
    store = Store(db, readonly=True)
    try:
        for path in paths:
            spec = specs.load_spec(path, check_files=False)
            run = store.get_run(spec.name)
            flagged = flagged_items(store, run["id"]) if run is not None else []
            if flagged:
                print(f"warning: {path}: {flag_message(flagged)}", file=out)
    finally:
        store.close()


async def rejudge(spec: specs.Spec, rows: list[dict[str, Any]]) -> dict[int, bool | None]:
    """The spec's judge asked again on every labelled output; answers by label id."""
    from engine.evaluators.judge import LLMJudge

    ev = spec.evaluate
    if not isinstance(ev, specs.ChecklistEval):
        raise UserError(f"run {spec.name!r} is not a checklist run: nothing to re-judge")
    questions = {i.name: i for i in ev.items if i.question is not None}
    judge = LLMJudge(ev.judge or specs.LLMSettings(temperature=0.0))
    out: dict[int, bool | None] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["output"] is not None and r["item"] in questions:
            groups.setdefault((r["output"], r["input"]), []).append(r)
    gate = asyncio.Semaphore(4)

    async def one(output: str, input: str, labelled: list[dict[str, Any]]) -> None:
        async with gate:
            results, _ = await judge.judge([questions[r["item"]] for r in labelled], output,
                                           input)
        said = {res.item: res.passed for res in results}
        for r in labelled:
            out[r["id"]] = said.get(r["item"])

    await asyncio.gather(*(one(o, i, rs) for (o, i), rs in groups.items()))
    return out


def cmd_judge_report(db: Path, run_name: str, again: bool = False,
                     out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout  # now's, not import's
    store = Store(db, readonly=not again)
    run = store.get_run(run_name)
    if run is None:
        names = ", ".join(r["name"] for r in store.runs()) or "none yet"
        raise UserError(f"no run named {run_name!r} in {db} (runs: {names})")
    rows = store.labels(run["id"])
    if not rows:
        print(f"{run_name}: no labels yet (label answers in the app's Evidence tab)", file=out)
        return 0
    before = item_reports(rows)
    for line in report_lines(run, before):
        print(line, file=out)
    if again:
        spec = specs.Spec.model_validate_json(run["spec_json"] or "{}")
        answers = asyncio.run(rejudge(spec, rows))
        after = {r.item: r for r in item_reports(rows, answers)}
        print("re-judged with the spec's current judge: agreement before → after", file=out)
        for r in before:
            a, b = r.agreement, after[r.item].agreement if r.item in after else None
            print(f"  {printable(r.item)[:20]:<20} {'-' if a is None else f'{a:.2f}'} → "
                  f"{'-' if b is None else f'{b:.2f}'}", file=out)
    return 1 if any(r.flagged for r in before) else 0


# ---------------------------------------------------------------- the judge as a target


def read_rubric(path: Path) -> dict[str, str]:
    """A rubric file: YAML mapping each item's name to its question (one-line errors)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the rubric: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML: {' '.join(str(exc).split())[:200]}") from None
    if not isinstance(data, dict) or not data or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()):
        raise UserError(f"{path}: a rubric maps each item's name to its question "
                        "(`clear: Is the reply clear?`)")
    return data


def cmd_judge_agreement(db: Path, run_name: str, rubric_path: Path,
                        out: TextIO | None = None) -> int:
    """`judge-agreement RUN RUBRIC`: the run's judge, asked the rubric's questions, on every
    labelled output; prints each item's agreement with the labels and `agreement: X` (a metric
    spec whose target is the rubric climbs it: the project improving its measuring stick)."""
    out = out if out is not None else sys.stdout  # now's, not import's
    rubric = read_rubric(rubric_path)
    if not db.exists():
        raise UserError(f"{db}: no such store (the labels are in the run's store)")
    store = Store(db, readonly=True)
    try:
        run = store.get_run(run_name)
        if run is None:
            raise UserError(f"no run named {run_name!r} in {db}")
        rows = [r for r in store.labels(run["id"]) if r["output"] is not None]
    finally:
        store.close()
    spec = specs.Spec.model_validate_json(run["spec_json"] or "{}")
    ev = spec.evaluate
    if not isinstance(ev, specs.ChecklistEval):
        raise UserError(f"run {run_name!r} is not a checklist run: no judge to measure")
    unknown = sorted(set(rubric) - {i.name for i in ev.items if i.question is not None})
    if unknown:
        raise UserError(f"{rubric_path}: no judged item named {', '.join(unknown)} in "
                        f"{run_name!r}")
    items = [i.model_copy(update={"question": rubric.get(i.name, i.question)}) for i in ev.items]
    spec = spec.model_copy(update={"evaluate": ev.model_copy(update={"items": items})})
    rows = [r for r in rows if r["item"] in rubric]
    if not rows:
        raise UserError(f"{run_name}: no labelled outputs of the rubric's items yet "
                        f"(autoresearch-tui label {run_name})")
    reports = item_reports(rows, asyncio.run(rejudge(spec, rows)))
    agree = sum(r.agree for r in reports)
    answered = sum(r.labels - r.unanswered for r in reports)
    for r in reports:
        a = r.agreement
        print(f"{printable(r.item)}: {'-' if a is None else f'{a:.4f}'} of {r.labels}", file=out)
    print(f"agreement: {agree / answered if answered else 0.0:.4f}", file=out)
    return 0
