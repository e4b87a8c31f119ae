"""Reading a spec's YAML safely: bounded in memory and depth, with the line of every key.

Before anything is built, the parser's event stream (PyYAML's parser is iterative, so this
cannot recurse) is scanned once with bounded work: nesting deeper than MAX_DEPTH, aliases
that would expand to more than MAX_ALIAS_EXPANSION nodes and characters (a "billion laughs"
of 1.4 KB grows past gigabytes), recursive aliases and NUL characters are refused at their
own line. Only then is the text composed (recursively, now safely) and constructed. A key
given twice in one mapping is an error at its second line (YAML's "last one wins" silently
dropped `stop: {max_rounds}`).
"""

from __future__ import annotations

from typing import Any

import yaml

#: Deepest nesting of mappings and sequences a spec may have (real ones use 5 or 6).
MAX_DEPTH = 64
#: Nodes plus characters that aliases may add to a spec when expanded.
MAX_ALIAS_EXPANSION = 100_000


class YamlRefused(ValueError):
    """YAML that is not read: `line` is 1-based; the message names the problem."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


#: libyaml's parser when PyYAML has it (ten times faster); the pure-Python one otherwise, and
#: always for the message of an error (the same wording and positions everywhere).
FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(text: str) -> tuple[Any, dict[tuple, int]]:
    """(data, {key path: line}) for spec text; raises YamlRefused or yaml.YAMLError."""
    try:
        return _read(text, FAST_LOADER)
    except yaml.YAMLError:
        if FAST_LOADER is yaml.SafeLoader:
            raise
    return _read(text, yaml.SafeLoader)


def _read(text: str, loader: type) -> tuple[Any, dict[tuple, int]]:
    _scan(text, loader)
    node = yaml.compose(text, Loader=loader)
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines
    data = loader(text).construct_document(node)  # refuses unhashable keys first
    _lines(node, (), lines)
    return data, lines


def _flow_depth(text: str) -> None:
    """Refuse deep `[[[[...` before PyYAML's scanner sees it: it rescans every open flow
    level at each token (quadratic: 3,000 levels take seconds). Brackets in quotes and
    comments are skipped; the count is rough, but no real spec opens 64 of them at once."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth, line, quote = 0, 1, ""
    comment = False
    for char in text:
        if char == "\n":
            line += 1
            comment, quote = False, ""  # rough: a quote left open cannot hide the rest
            continue
        if comment:
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth = max(0, depth - 1)


def _scan(text: str, loader: type) -> None:
    """One pass over the events with bounded work; see the module docstring."""
    if loader is yaml.SafeLoader:
        _flow_depth(text)
    #: Per open collection: [its anchor, its expanded cost so far].
    stack: list[list[Any]] = []
    costs: dict[str, int] = {}
    added = 0
    for event in yaml.parse(text, Loader=loader):
        line = event.start_mark.line + 1
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise YamlRefused(line, f"nested deeper than {MAX_DEPTH} levels")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, cost = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            if "\x00" in event.value:
                raise YamlRefused(line, "a value holds a NUL character (\\0), which no path, "
                                        "command or text may contain")
            anchor, cost = event.anchor, 1 + len(event.value)
        elif isinstance(event, yaml.AliasEvent):
            if any(frame[0] == event.anchor for frame in stack):
                raise YamlRefused(line, f"alias *{event.anchor} refers to a value that "
                                        "contains it (a recursive alias)")
            anchor, cost = None, costs.get(event.anchor, 1)
            added += cost
            if added > MAX_ALIAS_EXPANSION:
                raise YamlRefused(line, f"aliases expand to more than {MAX_ALIAS_EXPANSION:,} "
                                        "nodes and characters; write the values out instead")
        else:
            continue
        if anchor is not None:
            costs[anchor] = cost
        if stack:
            stack[-1][1] += cost


def _lines(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    """The line of every mapping key and sequence entry; a repeated key is refused."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode) and key != "<<":
                if (key_node.tag, key) in seen:
                    raise YamlRefused(key_node.start_mark.line + 1, f"key {key!r} is given "
                                      "twice in this mapping (only one may stay)")
                seen.add((key_node.tag, key))
            lines[path + (key,)] = key_node.start_mark.line + 1
            _lines(value_node, path + (key,), lines)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _lines(child, path + (index,), lines)


def error_line(exc: yaml.YAMLError, text: str) -> tuple[int, str]:
    """(line, problem) of a YAML error, whichever kind it is (a reader error has only a
    character position)."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(0, exc.position)) + 1
        char = exc.character
        shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        return line, f"character {shown} is not allowed in YAML"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return (mark.line + 1 if mark else 1), problem
