"""Deterministic checklist items: each answers yes/no for one sample, with evidence."""

from __future__ import annotations

import json
import re
from typing import Any

from engine import spec as specs
from engine.model import Session

#: How long a `command` item may take on one sample.
COMMAND_ITEM_TIMEOUT = 60.0


def last_json(sample: str) -> Any:
    """The sample parsed as JSON, or its last line that parses as JSON."""
    try:
        return json.loads(sample)
    except ValueError:
        pass
    for line in reversed(sample.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise ValueError("no JSON in the sample")


def json_lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, list) and part.isdigit():
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(path)
    return data


def _quote(text: str, start: int, end: int) -> str:
    lo, hi = max(0, start - 30), min(len(text), end + 30)
    return "…" + text[lo:hi].replace("\n", " ") + "…"


def check_text(item: specs.Item, sample: str) -> tuple[bool, str]:
    """Apply a text or JSON check; returns (passed, evidence)."""
    if item.regex is not None:
        match = re.search(item.regex, sample, flags=re.MULTILINE)
        return (True, _quote(sample, match.start(), match.end())) if match else (
            False, f"no match for /{item.regex}/")
    if item.contains is not None:
        at = sample.find(item.contains)
        return (True, _quote(sample, at, at + len(item.contains))) if at >= 0 else (
            False, f"does not contain {item.contains!r}")
    if item.not_contains is not None:
        at = sample.find(item.not_contains)
        return (True, f"no {item.not_contains!r}") if at < 0 else (
            False, _quote(sample, at, at + len(item.not_contains)))
    if item.words is not None:
        count = len(sample.split())
        lo, hi = item.words.min, item.words.max
        ok = (lo is None or count >= lo) and (hi is None or count <= hi)
        return ok, f"{count} words (bounds {lo if lo is not None else '-'}..{hi if hi is not None else '-'})"
    if item.json_ is not None:
        check = item.json_
        try:
            value = json_lookup(last_json(sample), check.path)
        except (ValueError, KeyError, IndexError):
            return False, f"no `{check.path}` in the sample's JSON"
        if check.equals is not None:
            return value == check.equals, f"{check.path} = {value!r}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False, f"{check.path} = {value!r} is not a number"
        ok = (check.min is None or number >= check.min) and (check.max is None or number <= check.max)
        bounds = " ".join(b for b in (f"≥ {check.min:g}" if check.min is not None else "",
                                      f"≤ {check.max:g}" if check.max is not None else "") if b)
        return ok, f"{check.path} = {number:g} (wants {bounds})"
    raise ValueError(f"item {item.name} has no text check")


def check_margin(item: specs.Item, sample: str) -> float | None:
    """How far a numeric JSON check's value is from its nearest bound, in units of that
    bound (its magnitude, or 1 for a bound of 0): positive when it passes, negative when
    it fails; None for any other check, or a sample without the number."""
    check = item.json_
    if check is None or check.equals is not None or (check.min is None and check.max is None):
        return None
    try:
        number = float(json_lookup(last_json(sample), check.path))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if number != number:  # NaN: as far as can be
        return -1e9
    margins = [(number - b) / (abs(b) or 1.0) for b in (check.min,) if b is not None]
    margins += [(b - number) / (abs(b) or 1.0) for b in (check.max,) if b is not None]
    return round(min(margins), 6)


async def check_command(item: specs.Item, sample: str, session: Session) -> tuple[bool, str]:
    """A command item: the sample arrives on stdin; exit status 0 means yes."""
    assert item.command is not None
    result = await session.run(item.command, timeout=COMMAND_ITEM_TIMEOUT, stdin=sample)
    if result.timed_out:
        return False, f"check timed out after {COMMAND_ITEM_TIMEOUT:g}s"
    tail = result.output.strip().splitlines()[-1:] or [""]
    return result.exit_code == 0, f"exit {result.exit_code}: {tail[0][:200]}"
