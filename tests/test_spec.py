"""Specs: valid ones load; every malformed one gives a one-line `file:line: field: problem`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.spec import SpecError, load_spec, parse_spec
from tests.conftest import REPO, metric_spec, run_cli, write

GOOD = """\
name: toy
target:
  workspace: ws
  files: [params.yaml]
mutator:
  kind: params
  file: params.yaml
  params:
    x: {type: int, min: 0, max: 20}
evaluate:
  kind: metric
  command: python score.py
  metric: loss
"""


def error_for(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_demo_specs_are_valid():
    for path in sorted((REPO / "checklists" / "demo").glob("*.yaml")):
        spec = load_spec(path)
        assert spec.workspace.is_dir()


def test_good_spec_parses_with_defaults():
    spec = parse_spec(GOOD)
    assert spec.decide.rule == "greater"
    assert spec.direction == "minimize"
    assert spec.target_score is None  # metrics have no default target
    assert spec.workers[0].kind == "local"


def test_malformed_yaml_names_the_line():
    assert error_for("name: toy\ntarget: [unclosed\n").startswith("s.yaml:")
    assert "malformed YAML" in error_for("name: toy\ntarget: [unclosed\n")


def test_missing_required_field_names_field_and_line():
    text = GOOD.replace("  metric: loss\n", "")
    assert error_for(text) == "s.yaml:10: evaluate.metric: required field is missing"


def test_unknown_key_is_an_error_not_ignored():
    text = GOOD.replace("  metric: loss", "  metric: loss\n  timeuot_s: 5")
    assert error_for(text) == "s.yaml:14: evaluate.timeuot_s: unknown key; did you mean `timeout_s`?"


CHECKLIST = GOOD.replace("""evaluate:
  kind: metric
  command: python score.py
  metric: loss
""", """evaluate:
  kind: checklist
  produce:
    command: python make.py {input}
  inputs: [a, b]
  items:
    - {name: short, words: {max: 9}}
""")


def test_a_block_without_its_kind_is_told_the_kinds_it_may_have():
    assert error_for(CHECKLIST) == ("s.yaml:12: evaluate.produce.kind: needs a `kind` "
                                    "(one of 'command', 'llm')")
    no_mutator_kind = GOOD.replace("  kind: params\n", "")
    assert error_for(no_mutator_kind) == ("s.yaml:5: mutator.kind: needs a `kind` "
                                          "(one of 'params', 'llm', 'agent')")


def test_a_key_in_the_wrong_block_is_told_so_not_offered_its_own_name():
    nested = CHECKLIST.replace("    command: python make.py {input}\n  inputs: [a, b]\n",
                               "    kind: command\n    command: python make.py {input}\n"
                               "    inputs: [a, b]\n")
    message = error_for(nested)
    assert message.startswith("s.yaml:15: evaluate.produce.inputs: `inputs` is not a key of "
                              "this block (it is one of another: check its indentation)")
    fixed = CHECKLIST.replace("  produce:\n", "  produce:\n    kind: command\n")
    assert parse_spec(fixed).evaluate.inputs == ["a", "b"]


def test_wrong_type_names_the_line():
    text = GOOD.replace("max: 20}", "max: lots}")
    message = error_for(text)
    assert message.startswith("s.yaml:9: mutator.params.x.max:")
    assert "number" in message


def test_unknown_kind_lists_the_kinds():
    message = error_for(GOOD.replace("kind: metric", "kind: vibes"))
    assert message.startswith("s.yaml:11: evaluate.kind: unknown kind")
    assert "metric" in message and "checklist" in message


def test_bad_list_entry_points_at_its_line():
    text = GOOD + "workers:\n  - kind: local\n  - kind: local\n    slots: 0\n"
    message = error_for(text)
    assert message.startswith("s.yaml:17: workers[1].slots:")


def test_not_a_mapping():
    assert error_for("- a\n- b\n") == "s.yaml:1: a spec is a mapping of keys (name, target, mutator, ...)"


def test_item_with_two_checks_is_refused():
    text = """\
name: c
target: {files: [a.txt]}
mutator: {kind: params, file: a.txt, params: {x: {type: int, min: 0, max: 1}}}
evaluate:
  kind: checklist
  produce: {kind: command, command: cat a.txt}
  items:
    - name: both
      regex: "x"
      contains: "y"
"""
    assert "several checks" in error_for(text)


def test_missing_target_file_is_refused(tmp_path: Path, params_workspace: Path):
    spec = metric_spec(params_workspace)
    spec.write_text(spec.read_text().replace("files: [params.yaml]", "files: [nope.yaml]"))
    with pytest.raises(SpecError, match=r"toy.yaml:\d+: target.files\[0\]: no such file: nope.yaml"):
        load_spec(spec)


def test_target_outside_workspace_is_refused(tmp_path: Path, params_workspace: Path):
    write(tmp_path / "outside.yaml", "x: 1\n")
    spec = metric_spec(params_workspace)
    spec.write_text(spec.read_text().replace("files: [params.yaml]", "files: [../outside.yaml]"))
    with pytest.raises(SpecError, match="outside the workspace"):
        load_spec(spec)


def test_check_command_exit_status_and_one_line(tmp_path: Path, params_workspace: Path):
    spec = metric_spec(params_workspace)
    ok = run_cli("check", str(spec))
    assert ok.returncode == 0 and "ok" in ok.stdout
    spec.write_text(spec.read_text().replace("kind: metric", "kind: metrik"))
    bad = run_cli("check", str(spec))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert f"{spec}:" in bad.stderr


def test_check_missing_spec_file(tmp_path: Path):
    result = run_cli("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "no such spec file" in result.stderr
