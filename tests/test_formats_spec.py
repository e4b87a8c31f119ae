"""Spec fields of the formats room: `target.ignore` adds to the defaults, and `check` says
so and how the metric will be read."""

from __future__ import annotations

from engine.spec import DEFAULT_IGNORE, check_notes, parse_spec

SPEC = """
name: s
target: {files: [a]%s}
mutator: {kind: agent, command: x}
evaluate: {kind: metric, command: x, metric: val_bpb}
"""


def test_ignore_adds_to_the_default_list_and_a_bang_takes_one_back():
    assert parse_spec(SPEC % "").target.ignore == DEFAULT_IGNORE
    assert check_notes(parse_spec(SPEC % "")) == []
    spec = parse_spec(SPEC % ", ignore: [data, .git, '!node_modules']")
    assert spec.target.ignore == [".git", "__pycache__", ".venv", ".pytest_cache", "data"]
    assert check_notes(spec) == ["target.ignore adds to the default list; candidate copies "
                                 "skip: .git, __pycache__, .venv, .pytest_cache, data"]


def test_check_says_how_the_metric_is_read(tmp_path):
    from engine.evaluators.metric import metric_notes

    notes = metric_notes(parse_spec(SPEC % ""))
    assert notes[0].startswith("evaluate.metric: val_bpb is read from `METRIC val_bpb=…`, "
                               "else the last `val_bpb: …` line")
    odd = parse_spec((SPEC % "").replace("metric: val_bpb", "metric: 'val bpb'"))
    assert "can only be read from a JSON line's key" in metric_notes(odd)[0]
