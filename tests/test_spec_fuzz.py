"""Fuzzing specs: whatever the text, `check` answers with a spec or one `file:line` line."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.spec import SpecError, parse_spec
from tests.test_spec import GOOD
from tui.cli import main

LINE = re.compile(r"^s\.yaml:\d+: \S.*$")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def outcome(text: str) -> None:
    try:
        parse_spec(text, "s.yaml")
    except SpecError as exc:
        assert LINE.match(str(exc)), str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_changing_any_field_of_a_good_spec_never_escapes_as_a_traceback(data):
    spec = yaml.safe_load(GOOD)
    paths = [("name",), ("target",), ("target", "files"), ("mutator",), ("mutator", "params"),
             ("mutator", "params", "x"), ("mutator", "params", "x", "max"), ("evaluate",),
             ("evaluate", "kind"), ("evaluate", "command"), ("stop",), ("workers",),
             ("decide",), ("parallel",), ("extra_key",)]
    path = data.draw(st.sampled_from(paths))
    node = spec
    for key in path[:-1]:
        node = node[key]
    if data.draw(st.booleans()) and path[-1] in node:
        del node[path[-1]]
    else:
        node[path[-1]] = data.draw(values)
    outcome(yaml.safe_dump(spec))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_a_spec_or_one_line(text):
    outcome(text)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_binary_garbage_through_check_exits_2_with_one_line(tmp_path, blob):
    path = tmp_path / "s.yaml"
    path.write_bytes(blob)
    err_buffer = io.StringIO()
    with contextlib.redirect_stderr(err_buffer), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    err = err_buffer.getvalue()
    if code != 0:
        assert code == 2
        assert len(err.strip().splitlines()) == 1 and err.startswith("autoresearch-tui: ")


def test_a_key_with_a_line_break_still_gives_a_one_line_message():
    # Found by the test above: a parameter named "\n" broke the message over two lines.
    spec = yaml.safe_load(GOOD)
    spec["mutator"]["params"] = {"\n": None}
    with pytest.raises(SpecError) as caught:
        parse_spec(yaml.safe_dump(spec), "s.yaml")
    assert LINE.match(str(caught.value)), str(caught.value)
    assert 'mutator.params."\\n"' in str(caught.value)
