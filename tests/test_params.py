"""The offline params mutator: its moves, proposals made ahead, resume without repeats,
bounded memory and a finished search. (Parameter files: tests/test_paramfile.py.)"""

from __future__ import annotations

import pytest

from engine.host import Host
from engine.model import CRASHED, KEPT, REVERTED, MutationError, Proposal
from engine.mutators import paramsearch
from engine.mutators.paramfile import read_params
from engine.mutators.params import ParamsMutator
from engine.spec import Param, load_spec
from engine.spec import ParamsMutator as ParamsConfig
from engine.store import Store
from tests.conftest import write

CASES = {
    "p.yaml": ("lr: 0.01  # learning rate\nname: adam\n", "lr: 0.02  # learning rate\nname: adam\n"),
    "p.toml": ("lr = 0.01 # learning rate\nname = \"adam\"\n",
               "lr = 0.02 # learning rate\nname = \"adam\"\n"),
    "p.py": ("import os\nlr = 0.01  # learning rate\nname = 'adam'\n",
             "import os\nlr = 0.02  # learning rate\nname = 'adam'\n"),
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_rewrite_changes_only_the_value(path):
    from engine.mutators.paramfile import write_param

    before, after = CASES[path]
    assert read_params(before, path, ["lr", "name"]) == {"lr": 0.01, "name": "adam"}
    assert write_param(before, path, "lr", 0.02) == after


def test_missing_parameter_is_a_mutation_error():
    with pytest.raises(MutationError, match="parameters not found: depth"):
        read_params("lr: 1\n", "p.yaml", ["lr", "depth"])


def config(seed: int | None = 1, **params: Param) -> ParamsConfig:
    return ParamsConfig(kind="params", file="p.yaml", seed=seed, params=params)


THREE = dict(lr=Param(type="float", min=1e-4, max=1, scale="log"),
             depth=Param(type="int", min=1, max=8),
             act=Param(type="choice", values=["relu", "tanh"]))


def _proposal(text: str) -> Proposal:
    return Proposal("t", {"p.yaml": text}, [], [], [], 1.0)


async def test_moves_stay_in_range_change_several_parameters_and_say_which():
    mutator = ParamsMutator(config(**THREE))
    text = "lr: 0.01\ndepth: 4\nact: relu\n"
    old = {"lr": 0.01, "depth": 4, "act": "relu"}
    widths, seen = set(), set()
    for _ in range(60):
        mutation = await mutator.propose(_proposal(text))
        new = read_params(mutation.files["p.yaml"], "p.yaml", list(old))
        assert 1e-4 <= new["lr"] <= 1 and 1 <= new["depth"] <= 8 and new["act"] in (
            "relu", "tanh")
        changed = [k for k in old if new[k] != old[k]]
        assert changed and all(f"{k} " in mutation.description for k in changed)
        assert " → " in mutation.description
        widths.add(len(changed))
        key = tuple(new.values())
        assert key not in seen  # never the same proposal twice
        seen.add(key)
        mutator.feedback(mutation, REVERTED)
    assert {1, 2, 3} <= widths  # one parameter, and several at once


async def test_step_size_grows_after_a_keep_and_shrinks_after_reverts():
    mutator = ParamsMutator(config(lr=Param(type="float", min=0, max=1)))
    mutation = await mutator.propose(_proposal("lr: 0.5\n"))
    mutation.state["move"] = "local"
    start = mutator.search.state.sigma
    mutator.feedback(mutation, KEPT)
    assert mutator.search.state.sigma > start
    for _ in range(8):
        mutator.feedback(mutation, REVERTED)
    assert mutator.search.state.sigma < start


async def test_the_moves_that_get_kept_are_used_more():
    mutator = ParamsMutator(config(**THREE))
    mutation = await mutator.propose(_proposal("lr: 0.01\ndepth: 4\nact: relu\n"))
    for _ in range(8):
        mutator.feedback(mutation, REVERTED)  # (the model needs a few observations)
    before = [mutator.search._pick_move() for _ in range(300)].count("wide")
    for _ in range(20):
        mutation.state["move"] = "wide"
        mutator.feedback(mutation, KEPT)
    after = [mutator.search._pick_move() for _ in range(300)].count("wide")
    assert after > 1.5 * before


def _twins() -> tuple[ParamsMutator, ParamsMutator]:
    cfg = config(5, lr=Param(type="float", min=0.0001, max=1.0, scale="log"),
                 depth=Param(type="int", min=1, max=12),
                 act=Param(type="choice", values=["relu", "gelu", "tanh"]))
    return ParamsMutator(cfg), ParamsMutator(cfg)


def _same(a: ParamsMutator, b: ParamsMutator) -> None:
    assert a.search.state == b.search.state
    assert list(a.search.tried) == list(b.search.tried)
    assert a.search.rng.getstate() == b.search.rng.getstate()


async def test_a_proposal_made_ahead_is_the_one_made_after_a_revert():
    ahead, plain = _twins()
    start = _proposal("lr: 0.01\ndepth: 4\nact: relu\n")
    last = await ahead.propose(start)
    assert last == await plain.propose(start)
    for verdict in [REVERTED, CRASHED] * 15:  # as the loop does: ahead while `last` runs
        made = ahead.propose_ahead(start, last)
        plain.feedback(last, verdict)
        assert made is not None and made.mutation == await plain.propose(start)
        last = made.mutation
    _same(ahead, plain)


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
    _same(ahead, plain)


# ------------------------------------------------------------ memory, finished search


async def test_memory_of_tried_values_is_bounded(monkeypatch):
    monkeypatch.setattr(paramsearch, "TRIED_MAX", 50)
    monkeypatch.setattr(paramsearch, "OBSERVED_MAX", 20)
    mutator = ParamsMutator(config(x=Param(type="float", min=0, max=1)))
    for _ in range(300):
        mutation = await mutator.propose(_proposal("x: 0.5\n"))
        mutator.feedback(mutation, REVERTED)
    assert len(mutator.search.tried) <= 50
    assert len(mutator.search.state.observed) <= 40


async def test_a_small_discrete_space_widens_then_reports_a_finished_search():
    """3 × 4 = 12 combinations: every one is proposed once (the best's far corners too,
    not only its neighbours), then the search says it is finished, with no invalid
    rounds counted as failures before that."""
    mutator = ParamsMutator(config(k=Param(type="int", min=0, max=3),
                                   mode=Param(type="choice", values=["a", "b", "c"])))
    text = "k: 0\nmode: a\n"
    proposed = set()
    for _ in range(11):
        assert mutator.finished is None
        mutation = await mutator.propose(_proposal(text))
        proposed.add(tuple(mutation.state["values"].values()))
        mutator.feedback(mutation, REVERTED)
    assert len(proposed) == 11 and (0, "a") not in proposed
    assert mutator.finished == "every value combination was tried (12 in all)"
    with pytest.raises(MutationError, match="every value combination was tried"):
        await mutator.propose(_proposal(text))


async def test_a_narrow_float_range_that_runs_out_of_values_finishes_the_search():
    """A float range holds few values at 4 significant digits (1 to 1.001: two): once both
    were proposed the search says it is finished (it once crashed with a TypeError)."""
    mutator = ParamsMutator(config(x=Param(type="float", min=1, max=1.001)))
    mutation = await mutator.propose(_proposal("x: 1.0\n"))
    assert mutation.state["values"] == {"x": 1.001}
    mutator.feedback(mutation, REVERTED)
    with pytest.raises(MutationError, match="no untried values found"):
        await mutator.propose(_proposal("x: 1.0\n"))
    assert mutator.finished and "in all" not in mutator.finished


async def test_a_run_over_a_small_space_stops_with_a_finished_search(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "p.yaml", "k: 0\nmode: a\n")
    # loss: |k - 2| + (mode != b), in sh (a spawn is cheaper than python's)
    write(ws / "score.sh", """
        k=$(sed -n 's/k: //p' p.yaml); m=$(sed -n 's/mode: //p' p.yaml)
        d=$((k - 2)); [ $d -lt 0 ] && d=$((-d)); [ "$m" = b ] || d=$((d + 1))
        echo "METRIC loss=$d"
    """)
    spec = write(tmp_path / "s.yaml", """
        name: small
        target: {workspace: ws, files: [p.yaml], protected: [score.sh]}
        mutator:
          kind: params
          file: p.yaml
          seed: 2
          params:
            k: {type: int, min: 0, max: 3}
            mode: {type: choice, values: [a, b, c]}
        evaluate: {kind: metric, command: sh score.sh, metric: loss, direction: minimize}
        stop: {max_rounds: 40}
    """)
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    run = store.get_run("small")
    rows = store.experiments(run["id"])
    assert run["stop_reason"] == "every value combination was tried (12 in all)"
    assert [r["verdict"] for r in rows].count("invalid") == 0
    assert len(rows) == 12 and run["best_score"] == 0
    assert loop.mutator.finished


# ------------------------------------------------------------ resume


async def test_resumed_runs_never_repeat_a_proposal(tmp_path):
    """Three stop/resume cycles of a seeded run: no candidate is an exact repeat of an
    earlier one (each resume used to replay the seeded sequence from its start)."""
    ws = tmp_path / "ws"
    write(ws / "p.yaml", "x: 3\ny: 2\n")
    write(ws / "score.sh", """
        x=$(sed -n 's/x: //p' p.yaml); y=$(sed -n 's/y: //p' p.yaml)
        echo "METRIC loss=$(( (x - 4) * (x - 4) + (y - 7) * (y - 7) ))"
    """)
    spec = tmp_path / "s.yaml"
    db = tmp_path / "a.db"
    for rounds in (6, 12, 18, 24):
        write(spec, f"""
            name: again
            target: {{workspace: ws, files: [p.yaml], protected: [score.sh]}}
            mutator:
              kind: params
              file: p.yaml
              seed: 9
              params:
                x: {{type: int, min: 0, max: 9}}
                y: {{type: int, min: 0, max: 9}}
            evaluate: {{kind: metric, command: sh score.sh, metric: loss,
                        direction: minimize}}
            stop: {{max_rounds: {rounds}}}
        """)
        store = Store(db)
        host = Host(store)
        host.add(load_spec(spec))
        await host.run_until_done()
        store.close()
    store = Store(db)
    run = store.get_run("again")
    files = [store.version_files(r["id"])["p.yaml"] for r in store.experiments(run["id"])
             if r["kind"] == "candidate"]
    assert len(files) == 24
    assert len(set(files)) == 24, "a resumed run proposed a candidate it had tried before"
