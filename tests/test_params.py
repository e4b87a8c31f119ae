"""The offline params mutator and in-place parameter files in four formats."""

from __future__ import annotations

import pytest

from engine.model import KEPT, REVERTED, MutationError, Proposal
from engine.mutators.paramfile import read_params, write_param
from engine.mutators.params import ParamsMutator
from engine.spec import Param
from engine.spec import ParamsMutator as ParamsConfig

CASES = {
    "p.yaml": ("lr: 0.01  # learning rate\nname: adam\n", "lr: 0.02  # learning rate\nname: adam\n"),
    "p.toml": ("lr = 0.01 # learning rate\nname = \"adam\"\n",
               "lr = 0.02 # learning rate\nname = \"adam\"\n"),
    "p.py": ("import os\nlr = 0.01  # learning rate\nname = 'adam'\n",
             "import os\nlr = 0.02  # learning rate\nname = 'adam'\n"),
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_rewrite_changes_only_the_value(path):
    before, after = CASES[path]
    assert read_params(before, path, ["lr", "name"]) == {"lr": 0.01, "name": "adam"}
    assert write_param(before, path, "lr", 0.02) == after


def test_json_params_round_trip():
    text = '{"lr": 0.01, "name": "adam"}'
    new = write_param(text, "p.json", "name", "sgd")
    assert read_params(new, "p.json", ["lr", "name"]) == {"lr": 0.01, "name": "sgd"}


def test_missing_parameter_is_a_mutation_error():
    with pytest.raises(MutationError, match="parameters not found: depth"):
        read_params("lr: 1\n", "p.yaml", ["lr", "depth"])


def config(**params) -> ParamsConfig:
    return ParamsConfig(kind="params", file="p.yaml", seed=1, params=params)


async def test_one_parameter_moves_within_bounds_and_reads_like_a_change():
    mutator = ParamsMutator(config(lr=Param(type="float", min=1e-4, max=1, scale="log"),
                                   depth=Param(type="int", min=1, max=8),
                                   act=Param(type="choice", values=["relu", "tanh"])))
    text = "lr: 0.01\ndepth: 4\nact: relu\n"
    for _ in range(30):
        mutation = await mutator.propose(Proposal("r", {"p.yaml": text}, [], [], []))
        new = read_params(mutation.files["p.yaml"], "p.yaml", ["lr", "depth", "act"])
        old = {"lr": 0.01, "depth": 4, "act": "relu"}
        changed = [k for k in old if new[k] != old[k]]
        assert changed == [mutation.state["param"]]
        assert 1e-4 <= new["lr"] <= 1 and 1 <= new["depth"] <= 8
        name = changed[0]
        assert mutation.description.startswith(f"{name} ") and " → " in mutation.description


async def test_step_size_grows_after_a_keep_and_shrinks_after_reverts():
    mutator = ParamsMutator(config(lr=Param(type="float", min=0, max=1)))
    mutation = await mutator.propose(Proposal("r", {"p.yaml": "lr: 0.5\n"}, [], [], []))
    start = mutator.steps["lr"]
    mutator.feedback(mutation, KEPT)
    assert mutator.steps["lr"] > start
    for _ in range(20):
        mutator.feedback(mutation, REVERTED)
    assert mutator.steps["lr"] < start


def _twins() -> tuple[ParamsMutator, ParamsMutator]:
    config = ParamsConfig(kind="params", file="p.yaml", seed=5, params={
        "lr": Param(type="float", min=0.0001, max=1.0, scale="log"),
        "depth": Param(type="int", min=1, max=12), "act": Param(type="choice",
                                                               values=["relu", "gelu", "tanh"])})
    return ParamsMutator(config), ParamsMutator(config)


def _proposal(text: str) -> Proposal:
    return Proposal("t", {"p.yaml": text}, [], [], [], 1.0)


async def test_a_proposal_made_ahead_is_the_one_made_after_a_revert():
    ahead, plain = _twins()
    start = _proposal("lr: 0.01\ndepth: 4\nact: relu\n")
    last = await ahead.propose(start)
    assert last == await plain.propose(start)
    for _ in range(30):  # as the loop does: ahead while `last` runs; it is not kept
        made = ahead.propose_ahead(start, last)
        plain.feedback(last, REVERTED)
        assert made is not None and made.mutation == await plain.propose(start)
        last = made.mutation
    assert (ahead.steps, ahead.weights, ahead.tried) == (plain.steps, plain.weights, plain.tried)


async def test_undoing_a_proposal_made_ahead_leaves_no_trace():
    """A keep, or a best version moved by a veto or a pin, undoes it: then the verdict's own
    feedback, and a proposal from the new best, are what they would have been."""
    ahead, plain = _twins()
    start = _proposal("lr: 0.01\ndepth: 4\nact: relu\n")
    last = await ahead.propose(start)
    await plain.propose(start)
    for verdict in (KEPT, REVERTED, KEPT):
        made = ahead.propose_ahead(start, last)
        assert made is not None
        made.undo()
        ahead.feedback(last, verdict)
        plain.feedback(last, verdict)
        moved = _proposal(last.files["p.yaml"])  # the new best (kept, or pinned)
        last = await ahead.propose(moved)
        assert last == await plain.propose(moved)
        start = moved
    assert (ahead.steps, ahead.weights, ahead.tried) == (plain.steps, plain.weights, plain.tried)
    assert ahead.rng.getstate() == plain.rng.getstate()
