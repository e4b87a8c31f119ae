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


def test_confine_notices_a_target_swapped_for_a_symlink_after_it_was_accepted(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "a.txt", "a\n")
    write(tmp_path / "outside.txt", "secret\n")
    w = Workspace(ws, ["a.txt"], [], [], "r")
    w.confine({"a.txt": "b\n"})  # accepted, and remembered
    (ws / "a.txt").unlink()
    (ws / "a.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(PathRefused, match="outside"):
        w.confine({"a.txt": "b\n"})


def test_staging_never_writes_through_a_symlink_an_evaluation_left_in_the_slot(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "a.txt", "a long first version\n")
    write(tmp_path / "outside.txt", "untouched\n")
    w = Workspace(ws, ["a.txt"], [], [], "r")
    slot = tmp_path / "slot"
    w.stage({"a.txt": "a long candidate version\n"}, slot)
    # The evaluation replaced the file with a symlink pointing outside its folder.
    (slot / "a.txt").unlink()
    (slot / "a.txt").symlink_to(tmp_path / "outside.txt")
    w.stage({"a.txt": "short\n"}, slot)
    assert (tmp_path / "outside.txt").read_text() == "untouched\n"
    assert not (slot / "a.txt").is_symlink()
    assert (slot / "a.txt").read_text() == "short\n"  # shorter than before: no old bytes left
    (slot / "a.txt").unlink()
    (slot / "a.txt").mkdir()  # or a folder in its place
    w.stage({"a.txt": "again\n"}, slot)
    assert (slot / "a.txt").read_text() == "again\n"
