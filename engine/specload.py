"""Loading a spec: YAML read once with bounded work (engine/specyaml.py), validated into
`Spec`, every error turned into one `file:line: field: problem` line (with a guess for a
misspelt key); then what validation alone cannot check (files exist and are confined) and
the notes and warnings `check` prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.specbase import SpecError, Strict
from engine.specevaluate import ChecklistEval
from engine.specmodel import Spec
from engine.specmutators import ParamsMutator
from engine.specyaml import YamlRefused, error_line, read_yaml


def _line_for(loc: tuple, data: Any, lines: dict[tuple, int]) -> tuple[int, str]:
    """Map a pydantic error location to the YAML line and a dotted field name.

    Pydantic puts a discriminated union's tag (`metric`, `params`) into locations right after
    the union's field; it is skipped when it equals that mapping's `kind`.
    """
    path: list[Any] = []
    node = data
    tag_skipped = False
    for part in loc:
        if isinstance(node, dict) and not tag_skipped and node.get("kind") == part:
            tag_skipped = True
            continue
        tag_skipped = False
        key = "json" if part == "json_" else part
        if isinstance(node, dict) and key in node:
            path.append(key)
            node = node[key]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        else:
            path.append(key)  # a missing key: name it; the line is its mapping's
            break
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{_shown_key(p)}"
                    for p in path).lstrip(".")
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])], field or "(top level)"
    return 1, field or "(top level)"


def _shown_key(key: object) -> str:
    """A mapping key as it reads in a one-line message: odd ones (empty, with spaces, line
    breaks or other control characters) quoted and escaped."""
    text = str(key)
    if text and text.isprintable() and not any(c.isspace() for c in text):
        return text
    return json.dumps(text)


def parse_spec(text: str, filename: str = "<spec>") -> Spec:
    """Parse and validate spec text. Raises SpecError with a one-line `file:line` message."""
    return _parse(text, filename)[0]


def _parse(text: str, filename: str) -> tuple[Spec, dict[str, Any], dict[tuple, int]]:
    """The spec, and the YAML data and key lines it came from (read once)."""
    try:
        data, lines = read_yaml(text)
    except YamlRefused as exc:
        raise SpecError(f"{filename}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        line, problem = error_line(exc, text)
        raise SpecError(f"{filename}:{line}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{filename}:1: a spec is a mapping of keys (name, target, mutator, ...)")
    try:
        return Spec.model_validate(data), data, lines
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key is the cause, a missing one usually its consequence (`mutater:`
        # makes `mutator` missing): report the unknown key, at its own line.
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(err["loc"])
        if err["type"].startswith("union_tag"):
            loc += ("kind",)
        line, field = _line_for(loc, data, lines)
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
        explained = " ".join(_explain(err, errors).split())  # one line, whatever pydantic said
        if err["type"] == "union_tag_not_found":
            explained += _kinds_at(data, tuple(err["loc"]))
        raise SpecError(f"{filename}:{line}: {field}: {explained}{suffix}") from None


def _explain(err: dict, errors: list[dict]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        guess = _closest_key(err, errors)
        if guess == str(err["loc"][-1]):  # spelled right, in the wrong block
            return f"`{guess}` is not a key of this block (it is one of another: check its indentation)"
        return f"unknown key; did you mean `{guess}`?" if guess else (
            "unknown key (check the spelling)")
    if kind == "union_tag_invalid":
        expected = err.get("ctx", {}).get("expected_tags", "")
        return f"unknown kind; expected one of {expected}"
    if kind == "union_tag_not_found":
        return "needs a `kind`"
    msg = err["msg"]
    return msg.removeprefix("Value error, ")


def _kinds_at(data: dict[str, Any], loc: tuple) -> str:
    """` (one of ...)`: the kinds a block without one may have, found by validating it once
    with a kind that is none of them (pydantic names the valid ones then); "" if not found."""
    import copy

    probe = copy.deepcopy(data)
    block: Any = probe
    try:
        for key in loc:  # (a tagged block's errors name its tag: `evaluate.checklist...`)
            if not (isinstance(block, dict) and key not in block and block.get("kind") == key):
                block = block[key]
        block["kind"] = "\x00"
        Spec.model_validate(probe)
    except ValidationError as exc:
        for e in exc.errors():
            if e["type"] == "union_tag_invalid" and tuple(e["loc"]) == loc:
                return f" (one of {e.get('ctx', {}).get('expected_tags', '')})"
    except (KeyError, IndexError, TypeError):
        pass
    return ""


def _closest_key(err: dict, errors: list[dict]) -> str | None:
    """The valid key an unknown one was probably meant to be: first among the keys missing
    beside it, then among every key a spec may have."""
    import difflib

    typed = str(err["loc"][-1])
    parent = tuple(err["loc"][:-1])
    missing = [str(e["loc"][-1]) for e in errors
               if e["type"] == "missing" and tuple(e["loc"][:-1]) == parent]
    for pool in (missing, _all_keys()):
        found = difflib.get_close_matches(typed, pool, n=1, cutoff=0.6)
        if found:
            return found[0]
    return None


def _all_keys() -> list[str]:
    keys: set[str] = set()
    todo: list[type[BaseModel]] = [Strict]
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
    keys.discard("path")  # set by load_spec, not a YAML key
    return sorted(keys)


def load_spec(path: str | Path, *, check_files: bool = True) -> Spec:
    """Read, parse and validate a spec file; with `check_files`, the target files must exist."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise SpecError(f"{path}: cannot read spec: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                        f"column {column}); save the spec as UTF-8") from None
    spec, data, lines = _parse(text, str(path))
    spec.path = path.resolve()
    if check_files:
        check_spec_files(spec, text, (data, lines))
    return spec


def check_spec_files(spec: Spec, text: str,
                     read: tuple[dict[str, Any], dict[tuple, int]] | None = None) -> None:
    """Check what validation alone cannot: the workspace and target files exist and are
    confined. `read`: the (data, lines) `text` gave already."""
    data, lines = read or read_yaml(text)
    where = str(spec.path)
    ws = spec.workspace
    if not ws.is_dir():
        line = lines.get(("target", "workspace"), lines.get(("target",), 1))
        raise SpecError(f"{where}:{line}: target.workspace: no such folder: {ws}")
    for index, rel in enumerate(data["target"].get("files", [])):  # each: engine/library.py
        line = lines.get(("target", "files", index), 1)
        full = (ws / rel).resolve()
        if not full.is_relative_to(ws):
            raise SpecError(f"{where}:{line}: target.files[{index}]: {rel} is outside the workspace")
        if not full.is_file():
            raise SpecError(f"{where}:{line}: target.files[{index}]: no such file: {rel}")
        if rel in spec.target.protected:
            raise SpecError(f"{where}:{line}: target.files[{index}]: {rel} is also protected")
    if spec.library is not None and spec.target.each is None:
        raise SpecError(f"{where}:{lines.get(('library',), 1)}: library: only for a spec with "
                        "target.each (one run per file)")
    mut = spec.mutator
    if isinstance(mut, ParamsMutator) and not (mut.file in spec.target.files or spec.target.each):
        line = lines.get(("mutator", "file"), lines.get(("mutator",), 1))
        raise SpecError(f"{where}:{line}: mutator.file: " + ("required field is missing" if
                        mut.file is None else f"{mut.file} is not one of target.files"))


def check_notes(spec: Spec) -> list[str]:
    """What `check` tells about how the spec reads (not warnings): what `ignore:` adds to."""
    if "ignore" not in spec.target.model_fields_set:
        return []
    return [f"target.ignore adds to the default list; candidate copies skip: "
            f"{', '.join(spec.target.ignore)}"]


def checklist_warnings(spec: Spec) -> list[str]:
    """Advice that does not stop a run: the 3–6 item sweet spot of a checklist."""
    ev = spec.evaluate
    if isinstance(ev, ChecklistEval) and not 3 <= len(ev.items) <= 6:
        return [
            f"{spec.path}: evaluate.items: {len(ev.items)} items; 3 to 6 work best "
            "(fewer miss dimensions of quality, more invite gaming the checklist)"
        ]
    return []
