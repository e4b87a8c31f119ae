"""Judge calibration (engine/labels.py): a judge that answers one item wrongly a known
fraction of the time, against the Messages-API stand-in, labelled by a scripted person."""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from pathlib import Path

from fake_anthropic import FakeAnthropic, answers, judged_items, judged_output

from engine.labels import cmd_judge_report, item_reports, label_examples, output_hash, wilson
from engine.loop import RunLoop
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import run_cli, write
from tests.test_loop import run_spec

WRONG = 0.3  # the share of `tone` answers the judge gets wrong
INPUTS = [f"in{i}" for i in range(48)]


def _bit(text: str) -> int:
    return hashlib.sha256(text.encode()).digest()[0]


def truth(item: str, output: str) -> bool:
    return _bit(f"{item}|{output}") % 2 == 0


def judge(miscalibrated: bool):
    """The fake judge: right, except on `tone`, where (miscalibrated) 3 of every 10 answers
    of each true class are flipped, in whatever order the requests come."""
    seen = {True: 0, False: 0}
    lock = threading.Lock()

    def say(item: str, out: str) -> str:
        right = truth(item, out)
        if miscalibrated and item == "tone":
            with lock:
                flip = seen[right] % 10 in (1, 4, 7)
                seen[right] += 1
            right = right != flip
        return "yes" if right else "no"

    def reply(body):
        out = judged_output(body).strip()
        return answers([(item, say(item, out), out[:20]) for item in judged_items(body)])
    return reply


SPEC = f"""
    name: calib
    target: {{workspace: ws, files: [knobs.yaml]}}
    mutator: {{kind: params, file: knobs.yaml, seed: 1, params: {{x: {{type: int, min: 0, max: 9}}}}}}
    evaluate:
      kind: checklist
      produce: {{kind: command, command: "echo out-{{input}}-{{sample}}"}}
      inputs: [{", ".join(INPUTS)}]
      concurrency: 4
      judge: {{model: claude-test, max_retries: 0, timeout_s: 5}}
      items:
        - {{name: clear, question: "Is it clear?"}}
        - {{name: polite, question: "Is it polite?"}}
        - {{name: tone, question: "Is the tone right?"}}
    stop: {{max_rounds: 1, target: 1.0}}
"""


async def test_judge_report_finds_the_miscalibrated_item(tmp_path: Path, api: FakeAnthropic):
    write(tmp_path / "ws" / "knobs.yaml", "x: 1\n")
    api.responder = judge(miscalibrated=True)
    store = await run_spec(tmp_path / "a.db", write(tmp_path / "s.yaml", SPEC))
    run = store.get_run("calib")
    base = store.experiments(run["id"])[0]
    # The scripted person labels every answer of the baseline with the truth.
    for r in store.item_results(base["id"]):
        out = f"out-{r['input']}-{r['sample']}"
        store.add_label(base["id"], r["item"], r["input"], r["sample"], truth(r["item"], out),
                        output=out, output_hash=output_hash(out),
                        note="a person's call" if r["item"] == "tone" else "")
    reports = {r.item: r for r in item_reports(store.labels(run["id"]))}
    tone = reports["tone"]
    assert tone.labels == len(INPUTS)
    for rate in (tone.tp, tone.tn):
        lo, hi = rate.interval
        assert lo <= 1 - WRONG <= hi, (rate, lo, hi)
    assert tone.flagged and tone.disagreements
    for name in ("clear", "polite"):
        assert reports[name].agreement == 1.0 and not reports[name].flagged
        assert reports[name].tp.interval[0] > 0.85 and reports[name].tn.interval[0] > 0.85
    text = io.StringIO()
    assert cmd_judge_report(tmp_path / "a.db", "calib", out=text) == 1  # a flagged item
    shown = text.getvalue()
    assert "LOW: its score is not evidence" in shown and "note: a person's call" in shown
    # judge: {examples: labels}: the disagreements, as the person answered them
    examples = label_examples(store, "calib")
    assert examples.count("<example item=\"tone\"") == min(12, len(tone.disagreements))
    # judge: {examples: labels} primes a run's judge; the flagged item is the run's alert,
    # and `check` against the store says so.
    primed = write(tmp_path / "p.yaml", SPEC.replace("timeout_s: 5}", "timeout_s: 5, "
                                                     "examples: labels}"))
    loop = RunLoop(load_spec(primed), store, run["id"])
    assert loop.evaluator.judge.examples == examples
    assert loop.alert.startswith("judge disagrees with the labels on tone (")
    checked = run_cli("--db", str(tmp_path / "a.db"), "check", str(primed))
    assert checked.returncode == 0 and "judge disagrees with the labels on tone" in checked.stderr
    # --rejudge with a judge that is right now: agreement on tone goes up to 1.
    api.responder = judge(miscalibrated=False)
    text = io.StringIO()
    await asyncio.to_thread(cmd_judge_report, tmp_path / "a.db", "calib", True, text)
    after = text.getvalue().split("agreement before → after")[1]
    line = next(x for x in after.splitlines() if x.strip().startswith("tone "))
    assert line.split()[-1] == "1.00" and float(line.split()[1]) < 0.9


def test_wilson_interval_and_the_cli_on_a_store_without_labels(tmp_path: Path):
    lo, hi = wilson(7, 10)
    assert 0.39 < lo < 0.40 and 0.89 < hi < 0.90  # the textbook values
    assert wilson(0, 0) == (0.0, 1.0)
    Store(tmp_path / "a.db").create_run("empty", spec_path="s.yaml", spec_json="{}",
                                        workspace=str(tmp_path), direction="maximize", target=None)
    done = run_cli("--db", str(tmp_path / "a.db"), "judge-report", "empty")
    assert done.returncode == 0 and "no labels yet" in done.stdout
    done = run_cli("--db", str(tmp_path / "a.db"), "judge-report", "nope")
    assert done.returncode == 2 and "no run named 'nope'" in done.stderr
    assert "Traceback" not in done.stderr
