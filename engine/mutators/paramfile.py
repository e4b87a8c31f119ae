"""Read and rewrite parameters in place, in YAML, JSON, TOML or Python (`NAME = value`).

A rewrite changes only the characters of the value: comments, blank lines, key order, the
value's quoting style and the column a trailing comment starts at all stay as they were. Each
value is written as a literal that reads back as the same type and value (`1e-05` is a
string to YAML 1.1, so a float is written `1.0e-05`; `off` is quoted); a rewrite is read
back and compared before it is handed on, so a value that cannot be written faithfully is a
MutationError, never a file that a training script then misreads.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import yaml

from engine.model import MutationError

# libyaml's loader when present: the params mutator reads its file every round.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
#: A plain YAML string that a YAML 1.2 reader (ruamel, most non-Python tools) takes for a
#: number: written quoted, so every reader agrees it is a string.
_NUMBER_LIKE = re.compile(
    r"[-+]?(\.?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.inf|\.nan|0x[0-9a-f]+|0o[0-7]+)",
    re.IGNORECASE)
_WIDE = 2**30  # no folding of long strings
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


@functools.cache
def file_format(path: str) -> str:
    suffix = PurePath(path).suffix.lower()
    return {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml",
            ".py": "python"}.get(suffix, "yaml")


@functools.cache
def _head_pattern(fmt: str, name: str) -> re.Pattern[str]:
    """The start of the line that sets `name`, up to its value."""
    key = re.escape(name)
    if fmt == "yaml":  # a top-level key: no indentation (a nested `lr:` is another key)
        return re.compile(rf"^(?:{key}|'{key}'|\"{key}\")[ \t]*:(?:[ \t]+|(?=[\r\n#]|$))",
                          re.MULTILINE)
    if fmt == "toml":
        return re.compile(rf"^[ \t]*(?:{key}|'{key}'|\"{key}\")[ \t]*=[ \t]*", re.MULTILINE)
    # Python: `NAME = value` or `NAME: type = value`, at any indentation (a class body).
    return re.compile(rf"^[ \t]*{key}[ \t]*(?::[^=\n]*)?=(?!=)[ \t]*", re.MULTILINE)


@dataclass
class _Slot:
    """Where a parameter's value sits in the text."""

    start: int
    end: int
    #: The spaces between the value and a trailing comment on its line (None: no comment).
    gap: int | None


def _quoted_end(text: str, i: int, fmt: str) -> int | None:
    """The index after the closing quote of the string literal starting at i."""
    quote = text[i]
    escapes = quote == '"' or fmt == "python"  # YAML '' and TOML '...' have no backslashes
    j = i + 1
    while j < len(text):
        ch = text[j]
        if ch in "\r\n":
            return None  # multi-line strings are not rewritten
        if escapes and ch == "\\":
            j += 2
            continue
        if ch == quote:
            if fmt == "yaml" and quote == "'" and text[j + 1:j + 2] == "'":
                j += 2
                continue
            return j + 1
        j += 1
    return None


def _locate(text: str, fmt: str, name: str) -> _Slot | None:
    if fmt == "json":
        return _locate_json(text, name)
    limit = len(text)
    if fmt == "toml":  # top-level keys come before the first [table]
        table = re.search(r"^[ \t]*\[", text, re.MULTILINE)
        limit = table.start() if table else limit
    match = _head_pattern(fmt, name).search(text, 0, limit)
    if match is None:
        return None
    start = match.end()
    line_end = len(text)
    for stop in ("\n", "\r"):
        found = text.find(stop, start)
        if found != -1:
            line_end = min(line_end, found)
    if start < line_end and text[start] in "'\"":
        end = _quoted_end(text, start, fmt)
        if end is None or text[start:end].startswith(('"""', "'''")):
            return None
    elif text.startswith("#", start):  # no value, only a comment
        end = start
    else:  # unquoted: up to a comment (YAML: `#` after a space; `a#b` is one word)
        comment = re.compile(r"[ \t]#" if fmt == "yaml" else "#")
        hit = comment.search(text, start, line_end)
        end = hit.start() if hit else line_end
        while end > start and text[end - 1] in " \t":
            end -= 1
    rest = text[end:line_end]
    tail = re.fullmatch(r"([ \t]*)(#.*)?", rest)
    if tail is None:
        return None  # something else follows the value (`x = 1; y = 2`): not rewritten
    return _Slot(start, end, len(tail[1]) if tail[2] else None)


def _locate_json(text: str, name: str) -> _Slot | None:
    """The value of the top-level key `name` (the last one, as json.loads takes it)."""
    decoder = json.JSONDecoder()
    found = None
    try:
        i = _JSON_SPACE.match(text).end()  # type: ignore[union-attr]
        if text[i:i + 1] != "{":
            return None
        i = _JSON_SPACE.match(text, i + 1).end()  # type: ignore[union-attr]
        while text[i:i + 1] == '"':
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _JSON_SPACE.match(text, i).end()  # type: ignore[union-attr]
            if text[i:i + 1] != ":":
                return None
            i = _JSON_SPACE.match(text, i + 1).end()  # type: ignore[union-attr]
            _, end = decoder.raw_decode(text, i)
            if key == name:
                found = _Slot(i, end, None)
            i = _JSON_SPACE.match(text, end).end()  # type: ignore[union-attr]
            if text[i:i + 1] != ",":
                break
            i = _JSON_SPACE.match(text, i + 1).end()  # type: ignore[union-attr]
    except ValueError:
        return None
    return found


def read_params(text: str, path: str, names: list[str]) -> dict[str, Any]:
    """The current value of each named parameter; a missing one is a MutationError."""
    fmt = file_format(path)
    try:
        if fmt == "json":
            data = json.loads(text)
        elif fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "yaml":
            data = yaml.load(text, Loader=_YAML_LOADER) or {}
        else:
            data = {}
            for name in names:
                slot = _locate(text, fmt, name)
                if slot is not None:
                    data[name] = ast.literal_eval(text[slot.start:slot.end].strip())
    except (ValueError, SyntaxError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise MutationError(f"{path}: cannot read parameters: {exc}") from None
    if not isinstance(data, dict):
        raise MutationError(f"{path}: cannot read parameters: not a mapping of names to values")
    missing = [n for n in names if n not in data]
    if missing:
        raise MutationError(f"{path}: parameters not found: {', '.join(missing)}")
    return {n: data[n] for n in names}


# ---------------------------------------------------------------- literals


def _yaml_number(value: Any) -> str | None:
    """An int or a finite float as YAML's own representer writes it (repr, with `.0` put
    before an exponent that has no point, as YAML 1.1's float pattern wants), or None. A
    millisecond evaluation's round spent a fifth of its engine time dumping and reading
    back one number through the YAML library."""
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        out = repr(value).lower()
        return out.replace("e", ".0e", 1) if "." not in out and "e" in out else out
    return None


_PLAIN_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?")


def _plain_number_slot(text: str, fmt: str, name: str, old: str, value: Any) -> bool:
    """Whether writing `value` over `old` needs no read-back of the whole file: a number
    written plainly over a plain number (no tag, anchor or quotes), on the only top-level
    line that sets the name (so the one a YAML reader takes). YAML only: its reader is the
    slow one, and the other formats' read-back is cheap."""
    return (fmt == "yaml" and _yaml_number(value) is not None and bool(old)
            and _PLAIN_NUMBER.fullmatch(old) is not None
            and len(_head_pattern(fmt, name).findall(text)) == 1)


def _yaml_literal(value: Any, old: str) -> str:
    if (plain := _yaml_number(value)) is not None:
        return plain
    style = old[:1] if old[:1] in ("'", '"') else None
    if not isinstance(value, str):
        style = None  # a number, a bool or null is never quoted (it would be a string)
    elif style is None and _NUMBER_LIKE.fullmatch(value):
        style = "'"
    out = yaml.dump(value, Dumper=_YAML_DUMPER, default_style=style, width=_WIDE,
                    allow_unicode=True)
    out = out.removesuffix("\n...\n").removesuffix("\n")
    if "\n" in out:  # a plain or single-quoted string that folds: double quotes never do
        out = yaml.dump(value, Dumper=_YAML_DUMPER, default_style='"', width=_WIDE,
                        allow_unicode=True).removesuffix("\n")
    return out


def _toml_string(value: str, quote: str) -> str:
    if quote == "'" and not any(c == "'" or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return f"'{value}'"
    escaped = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
               "\r": "\\r"}
    out = []
    for c in value:
        if c in escaped:
            out.append(escaped[c])
        elif not c.isprintable():  # (a line separator would split the line for editors)
            out.append(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _python_string(value: str, quote: str) -> str:
    out = repr(value)
    if quote in ("'", '"') and out[0] != quote:
        inner = out[1:-1]
        if quote not in inner and f"\\{out[0]}" not in inner:
            return quote + inner + quote
    return out


def _literal(fmt: str, value: Any, old: str) -> str:
    """`value` as a literal of the format, in the old literal's quoting style."""
    if fmt == "python":
        return _python_string(value, old[:1]) if isinstance(value, str) else repr(value)
    if fmt == "yaml":
        return _yaml_literal(value, old)
    if fmt == "json":
        out = json.dumps(value, ensure_ascii=False)
        if isinstance(value, str) and not out.isprintable():
            out = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in out)
        return out
    # TOML
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value, old[:1])
    if isinstance(value, (int, float)):
        return repr(value)
    raise MutationError(f"TOML cannot hold the value {value!r}")


def _one_literal(fmt: str, old: str) -> bool:
    """Whether the old value is one literal (`x = 1; y = 2` is not: rewriting it would
    drop `y`)."""
    try:
        if fmt == "python":
            ast.literal_eval(old)
        elif fmt == "toml":
            tomllib.loads(f"v = {old}")
    except (ValueError, SyntaxError, tomllib.TOMLDecodeError):
        return not old  # (an empty value is written over)
    return True


def write_param(text: str, path: str, name: str, value: Any) -> str:
    """The file text with one parameter's value replaced, everything else untouched."""
    return write_params(text, path, {name: value})


def write_params(text: str, path: str, values: dict[str, Any]) -> str:
    """The file text with these parameters' values replaced, everything else untouched; a
    trailing comment keeps its column where the gap before it allows. The result is read
    back: each value comes back as the same type and value, or this is a MutationError."""
    fmt = file_format(path)
    plain_numbers = []
    for name, value in values.items():
        slot = _locate(text, fmt, name)
        if slot is None:
            raise MutationError(f"{path}: no line sets `{name}` in a form that can be rewritten")
        old = text[slot.start:slot.end]
        plain_numbers.append(_plain_number_slot(text, fmt, name, old, value))
        if not _one_literal(fmt, old):
            raise MutationError(f"{path}: the line that sets `{name}` holds more than one "
                                "value; it is not rewritten")
        new = _literal(fmt, value, old)
        if fmt == "yaml" and text[slot.start - 1:slot.start] == ":":
            new = " " + new  # `lr:` with no value yet
        after = text[slot.end:]
        if slot.gap is not None:  # keep the comment's column: take or give spaces
            gap = max(1, slot.gap - (len(new) - len(old)))
            after = " " * gap + after[slot.gap:]
        text = text[:slot.start] + new + after
    if all(plain_numbers):
        return text  # (read back already: see _plain_number_slot)
    got = read_params(text, path, list(values))
    for name, value in values.items():
        if type(got[name]) is not type(value) or got[name] != value:
            raise MutationError(f"{path}: `{name}` written as {value!r} reads back as "
                                f"{got[name]!r}")
    return text
