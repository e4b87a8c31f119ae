"""A mutation can change only the target files; anything else is refused and recorded as invalid.

The mutator here is a stand-in for a hostile or confused model: it proposes the given file
edits. The loop, the workspace and the store are the real ones.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.host import Host
from engine.model import Mutation, Proposal
from engine.spec import load_spec
from engine.store import Store
from engine.workspace import PathRefused, Workspace
from tests.conftest import metric_spec, write


class ScriptedMutator:
    """Proposes the next edit from a list, as a model reply would."""

    def __init__(self, edits: list[dict[str, str]]) -> None:
        self.edits = list(edits)

    async def propose(self, proposal: Proposal) -> Mutation:
        files = self.edits.pop(0) if self.edits else {"params.yaml": "x: 7\ny: b\n"}
        return Mutation(description=f"edit {', '.join(files)}", files=files)

    def feedback(self, mutation: Mutation, verdict: str) -> None:
        pass


HOSTILE = {
    "parent folder": "../escape.txt",
    "absolute path": "/tmp/autoresearch-escape.txt",
    "protected file": "score.py",
    "not a target": "notes.txt",
    "the spec itself": "../toy.yaml",
    "symlink out": "link/escape.txt",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_edits_outside_the_targets_are_refused_and_recorded_invalid(tmp_path, params_workspace, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, params_workspace / "link")
    spec_path = metric_spec(params_workspace, stop="max_rounds: 2")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".db" not in p.name}
    path = HOSTILE[case]
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec_path))
    loop.mutator = ScriptedMutator([{path: "pwned\n"}])
    await host.run_until_done()
    rows = store.experiments(loop.run_id)
    assert rows[1]["verdict"] == "invalid"
    assert path.split("/")[-1] in rows[1]["reason"]
    assert rows[2]["verdict"] == "kept"  # the loop went on
    assert not Path("/tmp/autoresearch-escape.txt").exists()
    for p, content in before.items():
        if p.name != "params.yaml":
            assert p.read_bytes() == content, p


def test_confine_rules_in_one_place(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "a.txt", "a\n")
    write(ws / "sub" / "b.txt", "b\n")
    space = Workspace(ws, ["a.txt", "sub/b.txt"], ["p.txt"], [], "r")
    space.confine({"a.txt": "", "sub/b.txt": ""})
    for bad in ["../a.txt", "/etc/passwd", "sub/../../x", "p.txt", "c.txt"]:
        with pytest.raises(PathRefused):
            space.confine({bad: ""})


async def test_evaluation_command_comes_from_the_spec_not_from_the_mutation(tmp_path, params_workspace):
    """A mutation cannot smuggle a command in: only the spec's command runs."""
    marker = tmp_path / "ran"
    spec_path = metric_spec(params_workspace, stop="max_rounds: 1")
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec_path))
    loop.mutator = ScriptedMutator([{"params.yaml": f"x: 3\ny: b\ncommand: touch {marker}\n"}])
    await host.run_until_done()
    await asyncio.sleep(0.1)
    assert not marker.exists()
    assert store.experiments(loop.run_id)[1]["verdict"] in {"kept", "reverted"}
