"""Hostile and mistaken specs: each is refused with one line naming `file:line`, in bounded
time and memory — never a traceback, a hang, or a run that burns rounds on a typo."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from engine.spec import SpecError, load_spec, parse_spec
from tests.conftest import REPO, cli_env, metric_spec
from tests.test_spec import GOOD, error_for


def billion_laughs(levels: int = 7, fan: int = 10) -> str:
    text = GOOD + 'lol0: &l0 "lol"\n'
    for level in range(1, levels + 1):
        text += f"lol{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * fan) + "]\n"
    return text


def test_billion_laughs_is_refused_at_the_alias_in_bounded_memory_and_time(tmp_path):
    spec = tmp_path / "laughs.yaml"
    spec.write_text(billion_laughs())
    assert len(spec.read_bytes()) < 1500
    # In a child with 1 GB of address space: the expansion (gigabytes) must never be built.
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30));"
            "from tui.cli import main; sys.exit(main(['check', sys.argv[1]]))")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code, str(spec)], cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert line.startswith(f"autoresearch-tui: {spec}:") and "aliases expand" in line
    assert len(result.stderr.splitlines()) == 1


def test_a_few_aliases_still_work():
    text = GOOD.replace("evaluate:\n", "x-cmd: &cmd python score.py\nevaluate:\n")
    message = error_for(text)  # the alias itself is fine; the unknown top-level key is not
    assert "x-cmd: unknown key" in message
    spec = parse_spec(GOOD + "stop: &s {max_rounds: 3}\n")
    assert spec.stop.max_rounds == 3


def test_a_recursive_alias_is_refused():
    assert error_for(GOOD + "x: &r [1, *r]\n").startswith("s.yaml:14: alias *r")


@pytest.mark.parametrize("depth", [100, 600, 5000])
def test_deep_nesting_is_one_line_not_a_recursion_error(depth):
    text = GOOD + "extra: " + "[" * depth + "]" * depth + "\n"
    assert error_for(text) == "s.yaml:14: nested deeper than 64 levels"
    block = GOOD + "".join(" " * i + f"k{i}:\n" for i in range(depth)) + " " * depth + "v\n"
    assert "nested deeper than 64 levels" in error_for(block)


def test_a_nul_in_a_path_names_its_line(tmp_path, params_workspace):
    spec = metric_spec(params_workspace)
    spec.write_text(spec.read_text().replace("workspace: ws", 'workspace: "ws\\0x"'))
    with pytest.raises(SpecError, match=r"toy.yaml:3: a value holds a NUL character"):
        load_spec(spec)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(str(spec) + "\0")


def test_a_spec_that_is_not_utf8_names_line_and_column(tmp_path):
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes(GOOD.replace("command: python score.py", "command: caf\xe9").encode("latin-1"))
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert str(caught.value) == (f"{spec}:12: not UTF-8 text (byte 0xe9 at column 15); "
                                 "save the spec as UTF-8")


@pytest.mark.parametrize("odd", ["\u2028", "\r", "\u2029", "\x85", "\x1b]0;x\x07"])
def test_messages_quoting_user_text_stay_one_line(odd):
    for text in (GOOD.replace("kind: metric", f'kind: "met{odd}ric"'),
                 GOOD + f'"bad{odd}key": 1\n',
                 GOOD.replace("name: toy", f'name: "to{odd}y"')):
        message = error_for(text)
        assert message.isprintable() and "\r" not in message, repr(message)
        assert message.startswith("s.yaml:")


def test_a_duplicate_key_is_an_error_at_its_second_line():
    text = GOOD + "stop:\n  max_rounds: 5\nstop:\n  plateau: 3\n"
    assert error_for(text) == "s.yaml:16: key 'stop' is given twice in this mapping (only one may stay)"
    nested = GOOD.replace("  metric: loss\n", "  metric: loss\n  metric: acc\n")
    assert error_for(nested).startswith("s.yaml:14: key 'metric' is given twice")


def test_a_top_level_typo_is_the_unknown_key_at_its_own_line_with_a_suggestion():
    text = GOOD.replace("mutator:", "mutater:")
    assert error_for(text) == "s.yaml:5: mutater: unknown key; did you mean `mutator`? (and 1 more error)"
    assert "did you mean `max_rounds`?" in error_for(GOOD + "stop: {max_round: 3}\n")
    assert error_for(GOOD + "zzqx: 1\n") == "s.yaml:14: zzqx: unknown key (check the spelling)"


def test_yaml_control_characters_name_their_line():
    assert error_for(GOOD + "x: \x80\n").startswith("s.yaml:14: malformed YAML: character #x0080")


def test_memory_of_the_test_process_stays_small():
    # The refusals above never built what they refused (the child above checks 1 GB hard).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 2_000_000  # KB
