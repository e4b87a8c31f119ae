"""The engine's shape holds (docs/ARCHITECTURE.md): no import circles among its modules, and
no module grown past what a reader takes in (400 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

ENGINE = REPO / "engine"
MAX_LINES = 400


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def engine_imports(path: Path, known: set[str], typing: bool = False) -> set[str]:
    """Engine modules `path` imports at module level (with `typing`, its TYPE_CHECKING block
    too); imports inside a function are lazy loads (a kind's module, a heavy dependency)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = [n for n in tree.body]
    if typing:
        top += [n for s in tree.body if isinstance(s, ast.If) for n in s.body]
    for node in top:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    # A package's own __init__ is not an edge back to itself from its modules.
    return {t for t in out if not name.startswith(t + ".")}


def import_graph(typing: bool = False) -> dict[str, set[str]]:
    files = {module_name(p): p for p in ENGINE.rglob("*.py")}
    return {name: engine_imports(path, set(files), typing) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circles_among_engine_modules() -> None:
    graph = import_graph()
    assert "engine.loop" in graph and "engine.store" in graph["engine.loop"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " → ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_collaborator_imports_the_loop() -> None:
    """The loop builds its collaborators and hands them what they need; none reaches back
    (not even for a type hint)."""
    graph = import_graph(typing=True)
    users = sorted(m for m, deps in graph.items() if "engine.loop" in deps)
    assert users == ["engine.host"], users


def test_no_engine_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in ENGINE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
