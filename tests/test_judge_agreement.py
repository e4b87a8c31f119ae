"""`autoresearch-tui judge-agreement RUN RUBRIC` (engine/labels.py): the run's judge asked a
rubric's questions on every labelled output, scored by agreement with the person's labels, so
a metric spec whose target is the rubric climbs the judge's agreement (the stretch of issue 15).
Against the local Messages API stand-in, with a judge that answers well only when asked well."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, answers, judged_items, judged_output

from engine.labels import cmd_judge_agreement, output_hash
from engine.model import ItemResult, UserError
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import run_cli, write

REPO = Path(__file__).resolve().parent.parent
SPEC = """
    name: replies
    target: {workspace: ws, files: [prompt.md]}
    mutator: {kind: params, file: prompt.md, params: {x: {type: int, min: 0, max: 9}}}
    evaluate:
      kind: checklist
      produce: {kind: command, command: "echo {input}"}
      inputs: [a]
      judge: {model: claude-test, max_retries: 0, timeout_s: 5}
      items:
        - {name: polite, question: "Is it nice?"}
        - {name: short, words: {max: 50}}
"""
OUTPUTS = [f"reply {n}: {'please and thank you' if n % 3 else 'do it now'}" for n in range(6)]


def polite(output: str) -> bool:
    return "please" in output


def judge(body):
    """Says yes to everything unless its question names what politeness is."""
    system = body["system"][0]["text"]
    question = re.search(r"^- polite: (.*)$", system, flags=re.MULTILINE)[1]
    out = judged_output(body)
    said = polite(out) if "please" in question else True
    return answers([(i, "yes" if said else "no", out[:10]) for i in judged_items(body)])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    write(tmp_path / "ws" / "prompt.md", "x: 1\n")
    spec = load_spec(write(tmp_path / "s.yaml", SPEC))
    store = Store(tmp_path / "a.db")
    run_id = store.create_run("replies", spec_path="s.yaml", spec_json=spec.model_dump_json(),
                              workspace=str(tmp_path / "ws"), direction="maximize", target=1.0)
    exp_id = store.start_experiment(run_id, round=0, kind="baseline", parent=None)
    store.finish_experiment(exp_id, verdict="baseline", score=1.0, items=[
        ItemResult("polite", True, "a", n, "") for n in range(len(OUTPUTS))])
    for n, out in enumerate(OUTPUTS):  # the scripted person's labels
        store.add_label(exp_id, "polite", "a", n, polite(out), output=out,
                        output_hash=output_hash(out))
    store.close()
    return tmp_path / "a.db"


def test_a_better_rubric_scores_a_higher_agreement(db: Path, tmp_path: Path,
                                                   api: FakeAnthropic) -> None:
    api.responder = judge
    vague = write(tmp_path / "vague.yaml", "polite: Is it nice?\n")
    sharp = write(tmp_path / "sharp.yaml", "polite: Does it say please?\n")
    said = {}
    for name, rubric in (("vague", vague), ("sharp", sharp)):
        out = io.StringIO()
        assert cmd_judge_agreement(db, "replies", rubric, out) == 0
        said[name] = float(out.getvalue().splitlines()[-1].split("agreement: ")[1])
    assert said["vague"] == pytest.approx(4 / 6, abs=1e-4)  # yes to all: right on the polite
    assert said["sharp"] == 1.0


def test_bad_rubrics_and_runs_are_one_line_errors(db: Path, tmp_path: Path) -> None:
    for text, says in (("- a list\n", "maps each item's name"), ("polite: [\n", "not YAML"),
                       ("tone: Is it warm?\n", "no judged item named tone"),
                       ("short: Is it short?\n", "no judged item named short")):
        with pytest.raises(UserError) as err:
            cmd_judge_agreement(db, "replies", write(tmp_path / "r.yaml", text))
        assert says in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="no run named"):
        cmd_judge_agreement(db, "nope", write(tmp_path / "r.yaml", "polite: Is it?\n"))
    result = run_cli("--db", str(db), "judge-agreement", "replies", str(tmp_path / "none.yaml"))
    assert result.returncode == 2 and "cannot read the rubric" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_example_spec_climbs_a_rubric_on_the_agreement_metric() -> None:
    spec = load_spec(REPO / "checklists" / "judge-rubric.yaml")
    assert spec.evaluate.kind == "metric" and "judge-agreement" in spec.evaluate.command
    assert spec.target.files == ["rubric.yaml"] and spec.direction == "maximize"
