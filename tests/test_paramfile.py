"""Parameter files: every value written reads back as its declared type, in every format,
and a rewrite leaves the rest of the file (comments, quotes, alignment) as it was."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.model import MutationError
from engine.mutators.paramfile import read_params, write_param, write_params
from engine.mutators.params import ParamsMutator, coerce, round_value
from engine.spec import Param

FORMATS = ("p.yaml", "p.json", "p.toml", "p.py")

#: A file per format: a comment, the parameter `v` between two others, a trailing comment.
TEMPLATES = {
    "p.yaml": "# settings\nfirst: 1          # one\nv: {old}          # the value\nlast: 'q'\n",
    "p.json": '{{\n  "first": 1,\n  "v": {old},\n  "last": "q"\n}}\n',
    "p.toml": '# settings\nfirst = 1          # one\nv = {old}          # the value\n'
              'last = "q"\n\n[table]\nv = 2\n',
    "p.py": "import os\nfirst = 1          # one\nv = {old}          # the value\nlast = 'q'\n",
}
OLD = {"p.yaml": "0", "p.json": "0", "p.toml": "0", "p.py": "0"}


def _rewrite(path: str, value: object) -> str:
    text = TEMPLATES[path].format(old=OLD[path])
    new = write_param(text, path, "v", value)
    got = read_params(new, path, ["v", "first", "last"])
    assert got["v"] == value and type(got["v"]) is type(value), (new, got)
    assert (got["first"], got["last"]) == (1, "q")
    # Only the value's line changed, and its comment kept its column when there was room.
    before, after = text.split("\n"), new.split("\n")
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) <= 1
    if changed and "# the value" in before[changed[0]]:
        line = after[changed[0]]
        column = line.rindex("# the value")
        assert column == before[changed[0]].index("# the value") or (
            line[column - 2:column] != "  " and column > before[changed[0]].index("#"))
    return new


def _float_values(param: Param) -> st.SearchStrategy[float]:
    """Values the mutator writes for a float parameter: anything in range, rounded as it
    rounds, and the bounds themselves (1e-05 was the value that read back as a string)."""
    lo, hi = float(param.min), float(param.max)  # type: ignore[arg-type]
    inner = st.floats(lo, hi, allow_nan=False).map(lambda v: round_value(param, v))
    return st.one_of(st.sampled_from([lo, hi]), inner)


FLOAT_PARAMS = [Param(type="float", min=1e-05, max=0.1, scale="log"),
                Param(type="float", min=-3.5, max=1e17),
                Param(type="float", min=0.0, max=1.0)]


@pytest.mark.parametrize("path", FORMATS)
@pytest.mark.parametrize("param", FLOAT_PARAMS, ids=["log-small", "wide", "unit"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_float_reads_back_as_a_float(path, param, data):
    value = data.draw(_float_values(param))
    assert isinstance(value, float) and param.min <= value <= param.max
    _rewrite(path, value)


@pytest.mark.parametrize("path", FORMATS)
@settings(max_examples=60, deadline=None)
@given(value=st.integers(-(2**63), 2**63))
def test_an_int_reads_back_as_an_int(path, value):
    _rewrite(path, value)


CHOICES = st.one_of(st.text(max_size=20), st.integers(-1000, 1000), st.booleans(),
                    st.floats(-1e6, 1e6, allow_nan=False), st.none(),
                    st.sampled_from(["off", "yes", "no", "null", "~", "1e3", "0x10", "true",
                                     "a#b", "a # b", "'", '"', "a: b", "- x", "", " pad ",
                                     "\\", "tab\there", "line\nbreak", "é😀", "#"]))


@pytest.mark.parametrize("path", FORMATS)
@settings(max_examples=80, deadline=None)
@given(value=CHOICES)
def test_a_choice_keeps_its_type(path, value):
    if path == "p.toml" and value is None:
        with pytest.raises(MutationError, match="TOML cannot hold"):
            _rewrite(path, value)
        return
    _rewrite(path, value)


@pytest.mark.parametrize("path", FORMATS)
@settings(max_examples=40, deadline=None)
@given(first=CHOICES, second=CHOICES)
def test_a_string_written_over_a_string_reads_back(path, first, second):
    """Rewriting a value the file already holds as a quoted string (any quotes)."""
    if path == "p.toml" and None in (first, second):
        return
    text = write_param(TEMPLATES[path].format(old=OLD[path]), path, "v", first)
    got = read_params(write_param(text, path, "v", second), path, ["v"])["v"]
    assert got == second and type(got) is type(second)


def test_yaml_float_at_a_log_range_minimum_is_a_float_to_safe_load():
    new = write_param("lr: 0.02  # rate\n", "p.yaml", "lr", 1e-05)
    assert new == "lr: 1.0e-05 # rate\n"  # (the comment moves as little as it can)
    assert yaml.safe_load(new) == {"lr": 1e-05}


# ------------------------------------------------------------ formatting survives


FORMATTED = {
    "p.yaml": ("# Settings\nhidden: 32          # hidden units\nactivation: 'tanh'  # quoted\n"
               "lr: 0.02            # SGD learning rate\nname: \"adam\"\n\nnested:\n  lr: 9\n",
               {"hidden": 8, "activation": "relu", "lr": 0.0125, "name": "sgd"},
               "# Settings\nhidden: 8           # hidden units\nactivation: 'relu'  # quoted\n"
               "lr: 0.0125          # SGD learning rate\nname: \"sgd\"\n\nnested:\n  lr: 9\n"),
    "p.json": ('{\n    "hidden": 32,\n    "lr":   0.02,\n    "tags": {"lr": 1},\n'
               '    "name": "adam"\n}',
               {"hidden": 8, "lr": 0.0125, "name": "sgd"},
               '{\n    "hidden": 8,\n    "lr":   0.0125,\n    "tags": {"lr": 1},\n'
               '    "name": "sgd"\n}'),
    "p.toml": ("# Settings\nhidden = 32      # hidden units\nname = 'adam'   # literal\n"
               "lr = 0.02        # rate\n\n[model]\nlr = 9\n",
               {"hidden": 128, "name": "sgd", "lr": 0.5},
               "# Settings\nhidden = 128     # hidden units\nname = 'sgd'    # literal\n"
               "lr = 0.5         # rate\n\n[model]\nlr = 9\n"),
    "p.py": ('"""Config."""\nHIDDEN = 32      # hidden units\nNAME = "adam"    # double\n'
             "LR: float = 0.02  # typed\n",
             {"HIDDEN": 8, "NAME": "sgd", "LR": 0.0125},
             '"""Config."""\nHIDDEN = 8       # hidden units\nNAME = "sgd"     # double\n'
             "LR: float = 0.0125 # typed\n"),
}


@pytest.mark.parametrize("path", sorted(FORMATTED))
def test_rewrite_keeps_quotes_comments_and_their_alignment(path):
    before, values, after = FORMATTED[path]
    assert write_params(before, path, values) == after


def test_crlf_line_endings_survive():
    text = "a: 1   # one\r\nb: x\r\n"
    assert write_params(text, "p.yaml", {"a": 22, "b": "y"}) == "a: 22  # one\r\nb: y\r\n"


def test_a_comment_too_close_to_move_keeps_one_space():
    assert write_param("lr: 0.5 # c\n", "p.yaml", "lr", 0.0125) == "lr: 0.0125 # c\n"


@pytest.mark.parametrize(("path", "text"), [
    ("p.yaml", "v: 'multi\n  line'\n"),
    ("p.py", "v = 1; w = 2\n"),
    ("p.toml", 'v = """long"""\n'),
    ("p.toml", "[t]\nv = 1\n"),  # only inside a table: not a top-level parameter
    ("p.yaml", "v: 1\nv: 2\n"),  # the line found is not the value a reader sees
])
def test_a_value_that_cannot_be_rewritten_faithfully_is_a_mutation_error(path, text):
    with pytest.raises(MutationError):
        write_param(text, path, "v", 3)


def test_values_read_as_other_types_are_taken_as_declared():
    """A float the file holds as `1e-05` (a string to YAML) is a float to the mutator."""
    param = Param(type="float", min=1e-05, max=1.0, scale="log")
    assert coerce(param, "1e-05") == 1e-05
    assert coerce(Param(type="int", min=0, max=9), 4.0) == 4
    assert coerce(Param(type="choice", values=[1, 2]), 2) == 2


def test_every_format_parses_with_its_standard_reader():
    """The rewritten files are read by the libraries a target script would use."""
    for path, loads in (("p.yaml", yaml.safe_load), ("p.json", json.loads),
                        ("p.toml", tomllib.loads)):
        new = write_params(TEMPLATES[path].format(old="0"), path, {"v": 1e-05})
        assert math.isclose(loads(new)["v"], 1e-05)
    assert ParamsMutator  # (imported: the mutator writes through these functions)


def test_a_yaml_number_written_without_reading_back_is_still_checked_where_it_must_be():
    """The fast path (no read-back of the whole file) is for a plain number over a plain
    number on the only line that sets the name; a duplicate key, a tag or a quoted value
    still goes through the read-back that catches what the reader would see."""
    assert write_params("x: 5\ny: 1\n", "p.yaml", {"x": 7}) == "x: 7\ny: 1\n"
    assert write_params("x: 5 # lr\n", "p.yaml", {"x": 0.125}) == "x: 0.125 # lr\n"
    assert write_params("x: 1e-5\n", "p.yaml", {"x": 1e-07}) == "x: 1.0e-07\n"
    with pytest.raises(MutationError, match="reads back"):  # yaml takes the last `x`
        write_params("x: 5\nx: 6\n", "p.yaml", {"x": 7})
    with pytest.raises(MutationError, match="cannot read"):  # the anchor `y` used is gone
        write_params("x: &a 5\ny: *a\n", "p.yaml", {"x": 7})
