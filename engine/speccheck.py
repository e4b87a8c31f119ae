"""What `check` looks at beyond the spec's own shape: mistakes that would otherwise burn
rounds. Each is a SpecError at the line of the field it is about.

- A command whose first word does not exist (`pyhton train.py`): every round would crash
  with exit 127. The word is looked up on PATH or in the workspace, for commands that run
  on this machine (the mutator's; the evaluation's when every worker is local).
- A params-mutator parameter that is not in its file: every round would be invalid.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from engine import spec as specs
from engine.specyaml import read_yaml

#: First words the shell itself understands (no file to find), and wrappers whose own
#: argument is the command (checked no further).
SHELL_WORDS = frozenset("""
    . : [ [[ { ( ! alias bg break builtin case cd command continue declare echo env eval exec
    exit export false fg for function getopts hash if jobs kill let local nice nohup printf
    pwd read readonly return set shift source test time timeout trap true type ulimit umask
    unalias unset until wait while xargs
""".split())


def check_deeper(spec: specs.Spec, text: str) -> None:
    """Raise SpecError for a command that cannot start or a parameter not in its file."""
    _, lines = read_yaml(text)
    where = str(spec.path)
    for field, command in _local_commands(spec):
        problem = missing_program(command, spec.workspace)
        if problem:
            line = _line(lines, field)
            raise specs.SpecError(f"{where}:{line}: {_dotted(field)}: {problem}")
    mut = spec.mutator
    if isinstance(mut, specs.ParamsMutator):
        _check_params(spec, mut, lines, where)


def _local_commands(spec: specs.Spec) -> list[tuple[tuple, str]]:
    """(field path, command) of every command that runs on this machine."""
    out: list[tuple[tuple, str]] = []
    if isinstance(spec.mutator, specs.AgentMutator):
        out.append((("mutator", "command"), spec.mutator.command))
    if not all(isinstance(w, specs.LocalWorker) for w in spec.workers):
        return out  # a remote host has its own PATH: it is found out there
    ev = spec.evaluate
    if isinstance(ev, specs.MetricEval | specs.TestsEval):
        out.append((("evaluate", "command"), ev.command))
    if isinstance(ev, specs.MetricEval) and ev.guard:
        out.append((("evaluate", "guard"), ev.guard))
    if isinstance(ev, specs.ChecklistEval):
        if isinstance(ev.produce, specs.ProduceCommand):
            out.append((("evaluate", "produce", "command"), ev.produce.command))
        out += [(("evaluate", "items", i, "command"), item.command)
                for i, item in enumerate(ev.items) if item.command]
    if spec.screen is not None and spec.screen.command:
        out.append((("screen", "command"), spec.screen.command))
    return out


def missing_program(command: str, workspace: Path) -> str | None:
    """Why the command's first word cannot run, or None if it can (or cannot be known)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None  # quoting the shell will complain about itself
    words = [w for w in words if not _is_assignment(w)]  # `CUDA_VISIBLE_DEVICES=0 python ...`
    if not words:
        return None
    word = words[0]
    if word in SHELL_WORDS or any(c in word for c in "$`{}*?()<>|;&~"):
        return None  # expanded or run by the shell: nothing to look up here
    if "/" in word:
        path = Path(word) if Path(word).is_absolute() else workspace / word
        if path.exists():
            return None
        return f"`{word}` does not exist (looked in {workspace})"
    if shutil.which(word) or (workspace / word).is_file():
        return None
    close = _close_program(word)
    hint = f"; did you mean `{close}`?" if close else ""
    return f"command `{word}` is not found on PATH or in the workspace{hint}"


def _is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.isidentifier()


def _close_program(word: str) -> str | None:
    """A program on PATH with a name close to `word` (`pyhton` → `python`), if any."""
    import difflib

    names: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep)[:40]:
        try:
            names.update(entry.name for entry in os.scandir(folder) if len(entry.name) < 40)
        except OSError:
            continue
    found = difflib.get_close_matches(word, sorted(names), n=1, cutoff=0.75)
    return found[0] if found else None


def _check_params(spec: specs.Spec, mut: specs.ParamsMutator, lines: dict[tuple, int],
                  where: str) -> None:
    from engine.model import MutationError
    from engine.mutators.paramfile import read_params

    path = spec.workspace / mut.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise specs.SpecError(f"{where}:{_line(lines, ('mutator', 'file'))}: mutator.file: "
                              f"cannot read {mut.file}: {exc}") from None
    for name in mut.params:
        try:
            read_params(text, mut.file, [name])
        except MutationError as exc:
            line = _line(lines, ("mutator", "params", name))
            found = "not found" in str(exc)
            why = f"no parameter `{name}` in {mut.file}" if found else str(exc)
            raise specs.SpecError(f"{where}:{line}: mutator.params.{name}: {why}") from None


def _line(lines: dict[tuple, int], field: tuple) -> int:
    for n in range(len(field), -1, -1):
        if field[:n] in lines:
            return lines[field[:n]]
    return 1


def _dotted(field: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in field).lstrip(".")
