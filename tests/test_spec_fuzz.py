"""Fuzzing specs: whatever the text, `check` answers with a spec or one `file:line` line."""

from __future__ import annotations

import contextlib
import io
import random
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.spec import SpecError, parse_spec
from tests.conftest import REPO
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


# ------------------------------------------------------------ the shipped specs, mangled

SHIPPED = sorted([*(REPO / "checklists").glob("*.yaml"), *(REPO / "checklists").glob("demo/*.yaml")])
ODD_TEXT = ["\u2028", "\u2029", "\r", "\r\n", "\x85", "\u202e", "\ufeff", "\x1b[2J", "é", "🧪",
            "\t", "\u0301", "\x7f"]
RETYPED = ["1", "-1", "0", "1e999", ".nan", "[]", "{}", "null", "~", "yes", '"x"', "0x1F",
           "!!binary aGk=", "[1, [2, {a: b}]]", "''", "!!python/object:os.system x", "*nope",
           '"' + "x" * 5000 + '"']


def _laughs(indent: str) -> str:
    text = f'{indent}l0: &l0 "lol"\n'
    for level in range(1, 8):
        text += f"{indent}l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]\n"
    return text


def mangle(blob: bytes, rng: random.Random) -> bytes:
    """One random mistake or attack on a spec's bytes."""
    lines = blob.split(b"\n")
    at = rng.randrange(len(lines))
    op = rng.randrange(10)
    if op == 0:  # a line deleted
        del lines[at]
    elif op == 1:  # a line duplicated (a repeated key, or a list entry twice)
        lines.insert(at, lines[at])
    elif op == 2:  # a value retyped
        line = lines[at]
        if b":" in line:
            key = line.split(b":", 1)[0]
            lines[at] = key + b": " + rng.choice(RETYPED).encode()
    elif op == 3:  # odd unicode anywhere
        line = lines[at].decode("utf-8", "replace")
        cut = rng.randrange(len(line) + 1)
        lines[at] = (line[:cut] + rng.choice(ODD_TEXT) + line[cut:]).encode()
    elif op == 4:  # aliases that expand exponentially
        lines.insert(at, _laughs(" " * rng.choice([0, 2])).encode())
    elif op == 5:  # nesting far too deep, flow or block
        depth = rng.choice([70, 500, 3000])
        deep = ("[" * depth + "]" * depth) if rng.random() < 0.5 else "\n".join(
            " " * i + f"k{i}:" for i in range(depth // 5))
        lines.insert(at, f"x{at}: {deep}".encode())
    elif op == 6:  # a NUL byte, raw or escaped
        lines[at] = lines[at] + rng.choice([b"\x00", b' "\\0"'])
    elif op == 7:  # bytes that are not UTF-8
        cut = rng.randrange(len(lines[at]) + 1)
        lines[at] = lines[at][:cut] + rng.choice([b"\xff", b"\xc3\x28", b"\xe9", b"\xed\xa0\x80"]) \
            + lines[at][cut:]
    elif op == 8:  # indentation broken
        lines[at] = b" " * rng.randrange(1, 5) + lines[at]
    else:  # cut short
        lines = lines[:at]
    return b"\n".join(lines)


#: Mangled versions of each shipped spec (deterministic: the same ones on every run).
PER_SPEC = 20
#: Per input: no more time and no more memory than this.
INPUT_SECONDS = 3.0
INPUT_BYTES = 64 * 1024 * 1024


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang


def test_mangled_shipped_specs_never_escape_as_tracebacks_or_hangs(tmp_path):
    import shutil
    import signal
    import time
    import tracemalloc

    copy = tmp_path / "checklists"
    shutil.copytree(REPO / "checklists", copy, ignore=shutil.ignore_patterns("__pycache__"))
    rng = random.Random(12)
    previous = signal.signal(signal.SIGALRM, _alarm)
    tracemalloc.start()
    failures: list[str] = []
    tried = 0
    try:
        for original in SHIPPED:
            blob = original.read_bytes()
            for n in range(PER_SPEC):
                mangled = blob
                for _ in range(rng.choice([1, 1, 2, 3])):
                    mangled = mangle(mangled, rng)
                target = copy / original.relative_to(REPO / "checklists")
                target = target.with_name(f"fuzz-{n}-{target.name}")
                target.write_bytes(mangled)
                out, err = io.StringIO(), io.StringIO()
                tracemalloc.reset_peak()
                started = time.monotonic()
                signal.setitimer(signal.ITIMER_REAL, INPUT_SECONDS * 3)
                try:
                    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                        code = main(["check", str(target)])
                except _Hang:
                    failures.append(f"hang: {mangled[:200]!r}")
                    continue
                except BaseException as exc:  # a traceback a user would see
                    failures.append(f"{type(exc).__name__}: {exc} on {mangled[:200]!r}")
                    continue
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                tried += 1
                took = time.monotonic() - started
                peak = tracemalloc.get_traced_memory()[1]
                if took > INPUT_SECONDS or peak > INPUT_BYTES:
                    failures.append(f"{took:.1f}s, {peak >> 20} MB on {mangled[:200]!r}")
                if code != 0:
                    message = err.getvalue()
                    one = re.match(rf"^autoresearch-tui: {re.escape(str(target))}:\d+: \S.*\n$",
                                   message)
                    if code != 2 or not one or not message.rstrip("\n").isprintable():
                        failures.append(f"exit {code}, {message!r} on {mangled[:200]!r}")
                target.unlink()
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGALRM, previous)
    assert tried >= PER_SPEC * len(SHIPPED) - len(failures)
    assert not failures, "\n".join(failures[:10])
