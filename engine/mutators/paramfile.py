"""Read and rewrite parameters in place, in YAML, JSON, TOML or Python (`NAME = value`),
keeping the file's comments and layout: only the value on the parameter's line changes."""

from __future__ import annotations

import ast
import functools
import json
import re
import tomllib
from pathlib import PurePath
from typing import Any

import yaml

from engine.model import MutationError

# libyaml's loader when present: the params mutator reads its file every round.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def file_format(path: str) -> str:
    suffix = PurePath(path).suffix.lower()
    return {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml",
            ".py": "python"}.get(suffix, "yaml")


@functools.cache
def _line_pattern(fmt: str, name: str) -> re.Pattern[str]:
    key = re.escape(name)
    if fmt == "yaml":
        return re.compile(rf"^(?P<head>\s*{key}\s*:\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$",
                          re.MULTILINE)
    return re.compile(rf"^(?P<head>\s*{key}\s*=\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$",
                      re.MULTILINE)


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
                match = _line_pattern(fmt, name).search(text)
                if match:
                    data[name] = ast.literal_eval(match["value"].strip())
    except (ValueError, SyntaxError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise MutationError(f"{path}: cannot read parameters: {exc}") from None
    missing = [n for n in names if n not in data]
    if missing:
        raise MutationError(f"{path}: parameters not found: {', '.join(missing)}")
    return {n: data[n] for n in names}


def _literal(fmt: str, value: Any) -> str:
    if fmt == "python":
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def write_param(text: str, path: str, name: str, value: Any) -> str:
    """The file text with one parameter's value replaced, everything else untouched."""
    fmt = file_format(path)
    if fmt == "json":
        data = json.loads(text)
        data[name] = value
        return json.dumps(data, indent=2) + "\n"
    pattern = _line_pattern(fmt, name)
    if not pattern.search(text):
        raise MutationError(f"{path}: no line sets `{name}`")
    return pattern.sub(lambda m: f"{m['head']}{_literal(fmt, value)}{m['tail']}", text, count=1)
