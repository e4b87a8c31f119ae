"""Held-out inputs (engine/holdout.py): hidden from the climb, scored on the best version at
the baseline, every K keeps and the end; a run that games its optimized inputs is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.holdout import Point, divergence
from engine.spec import SpecError, parse_spec
from engine.store import Store
from tests.conftest import write
from tests.test_loop import run_spec

#: A producer that games: with `g` up, the optimized inputs (`opt-*`) satisfy more items and
#: the held-out ones fewer (honest: both more).
PRODUCE = """
    import sys, yaml
    p = yaml.safe_load(open("knobs.yaml"))
    g, honest = p["g"], p.get("honest", False)
    held = not sys.argv[1].startswith("opt-")
    n = g if not held or honest else 10 - g
    print("page:", " ".join(f"t{i}" for i in range(1, n + 1)))  # never empty: empty is unusable
"""


def spec_text(honest: bool = False, extra: str = "", holdout: str = "[held-1, held-2, held-3]"):
    items = "\n".join(f"            - {{name: i{i}, regex: '\\bt{i}\\b'}}" for i in range(1, 11))
    return f"""
        name: game
        target: {{workspace: ws, files: [knobs.yaml], protected: [produce.py]}}
        mutator:
          kind: params
          file: knobs.yaml
          seed: 2
          params: {{g: {{type: int, min: 0, max: 10}}}}
        evaluate:
          kind: checklist
          produce: {{kind: command, command: "python produce.py {{input}}"}}
          inputs: [opt-1, opt-2, opt-3]
          holdout: {holdout}
          items:
{items}
        holdout_every: 1
        stop: {{max_rounds: 25, target: 1.0, streak: 1{extra}}}
    """


def workspace(tmp_path: Path, honest: bool) -> Path:
    ws = tmp_path / "ws"
    write(ws / "knobs.yaml", f"g: 0\nhonest: {str(honest).lower()}\n")
    write(ws / "produce.py", PRODUCE)
    return ws


def holdout_rows(store: Store, run_id: int) -> list[dict]:
    return store.experiments_of_kind(run_id, "holdout")


async def test_gaming_run_raises_the_overfitting_alert_and_stops(tmp_path: Path):
    workspace(tmp_path, honest=False)
    spec = write(tmp_path / "s.yaml", spec_text(extra=", overfit: true"))
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("game")
    rows = holdout_rows(store, run["id"])
    assert rows and rows[0]["parent"] == store.experiments(run["id"])[0]["id"]  # the baseline
    first = json.loads(rows[0]["metrics_json"])
    assert first["holdout_score"] == 1.0 and first["optimized_score"] == 0.0
    assert 0 < first["holdout_se"] < 0.05  # binomial, over 30 answers
    assert run["stop_reason"].startswith("overfitting: +")
    assert " held out since #" in run["stop_reason"] and "; ship #" in run["stop_reason"]
    decision = json.loads(rows[-1]["decision_json"])
    assert decision["overfit"] is True
    ship = decision["ship"]
    assert store.experiment(ship)["verdict"] in ("baseline", "kept")
    # Held-out inputs never decide: the climb's item results hold only the optimized inputs.
    climbed = [e for e in store.experiments(run["id"]) if e["kind"] != "holdout"]
    inputs = {r["input"] for e in climbed for r in store.item_results(e["id"])}
    assert inputs == {"opt-1", "opt-2", "opt-3"}
    held = {r["input"] for r in store.item_results(rows[0]["id"])}
    assert held == {"held-1", "held-2", "held-3"}
    # ...nor reach the mutator's view of the changelog, nor the target streak.
    assert all(r["kind"] != "holdout" for r in store.changelog(run["id"], 500))
    assert all(r["score"] is None for r in rows)


async def test_honest_run_is_scored_every_keep_and_at_the_end_without_alert(tmp_path: Path):
    workspace(tmp_path, honest=True)
    spec = write(tmp_path / "s.yaml", spec_text(honest=True, extra=", overfit: true"))
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("game")
    assert run["stop_reason"].startswith("target 1 reached")
    rows = holdout_rows(store, run["id"])
    kept = [e for e in store.experiments(run["id"]) if e["verdict"] == "kept"]
    assert len(rows) == len(kept) + 1  # the baseline, then every keep (holdout_every: 1)
    last = json.loads(rows[-1]["metrics_json"])
    assert last["holdout_score"] == 1.0 and last["optimized_score"] == 1.0
    assert rows[-1]["parent"] == run["best_experiment"]
    assert not any("overfit" in (r["decision_json"] or "") for r in rows)
    # max_cost_usd, status and exports see it (the cost is zero here: the rows are counted).
    from engine.export import export_md, status_json

    status = status_json(store)[0]
    assert status["holdout_baseline"] == 0.0 and status["holdout_best"] == 1.0
    assert "held out 0 → 1" in "".join(export_md(store, run))


def test_holdout_fraction_is_a_seeded_split_of_the_inputs():
    text = spec_text(holdout="{fraction: 0.34, seed: 5}")
    one = parse_spec(text).evaluate
    two = parse_spec(text).evaluate
    assert one.holdout == two.holdout and len(one.holdout) == 1
    assert sorted(one.inputs + one.holdout) == ["opt-1", "opt-2", "opt-3"]


@pytest.mark.parametrize("holdout, says", [
    ("[opt-1]", "is also in `inputs`"),
    ("{fraction: 0.99}", "leaves none to optimize on"),
    ("{fraction: 1.5}", "holdout"),
    ("[]", "name at least one input"),
])
def test_bad_holdout_is_a_one_line_spec_error(holdout, says):
    with pytest.raises(SpecError) as err:
        parse_spec(spec_text(holdout=holdout), "s.yaml")
    assert says in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("s.yaml:")


def test_divergence_needs_the_fall_beyond_noise():
    base = Point(1, 1, 0.5, 0.8, 0.05)
    assert divergence([base, Point(2, 5, 0.7, 0.75, 0.05)], 2.0) is None  # within noise
    found = divergence([base, Point(2, 5, 0.7, 0.55, 0.05)], 2.0)
    assert found is not None and found.since.version == 1
    assert found.message("checklist") == ("overfitting: +0.20 on the checklist, \u22120.25 "
                                          "held out since #1")
    assert divergence([base, Point(2, 5, 0.5, 0.55, 0.05)], 2.0) is None  # no gain: no alarm
    # minimize: a held-out loss that grows is the fall
    low = Point(1, 1, 9.0, 3.0, 0.1)
    assert divergence([low, Point(2, 4, 5.0, 4.0, 0.1)], 2.0, "minimize") is not None


async def test_held_out_inputs_and_outputs_never_reach_the_llm_mutator(tmp_path: Path, api):
    from fake_anthropic import Router, change, page_spec, page_workspace

    ws = page_workspace(tmp_path)
    edits = [change(f"edit {n}", [{"file": "page.md", "search": "Contact us.",
                                   "replace": f"Contact us{'!' * n}."}]) for n in range(1, 5)]
    api.responder = Router(edits)
    spec = page_spec(ws, stop="max_rounds: 3", evaluate="""
evaluate:
  kind: checklist
  produce: {kind: command, command: "cat page.md; echo {input}-echo"}
  inputs: [visible-one, visible-two]
  holdout: [SECRET-HELD-IN]
  items:
    - {name: bang, contains: "!"}
    - {name: echoed, contains: "-echo"}
""", extra="holdout_every: 1")
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("page")
    assert store.experiments_of_kind(run["id"], "holdout")
    asked = [b for b in api.bodies if (b.get("tool_choice") or {}).get("name") == "propose_change"]
    assert asked
    for body in asked:
        text = json.dumps(body)
        assert "SECRET-HELD" not in text and "held out" not in text
        assert "visible-one" in text  # the optimized inputs are named


async def test_metric_holdout_command_and_tests_holdout_pattern(tmp_path: Path, params_workspace):
    from tests.conftest import metric_spec

    write(params_workspace / "held.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 5) + 1}")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 12",
                       extra="holdout_every: 2\n")
    text = spec.read_text().replace("timeout_s: 20", "timeout_s: 20\n  holdout_command: "
                                    "python held.py")
    spec.write_text(text)
    store = await run_spec(tmp_path / "a.db", spec)
    run = store.get_run("toy")
    rows = store.experiments_of_kind(run["id"], "holdout")
    assert json.loads(rows[0]["metrics_json"])["holdout_score"] == 5  # |1-5| + 1
    assert rows[-1]["parent"] == run["best_experiment"]

    ws = tmp_path / "tws"
    write(ws / "conf.yaml", "limit: 1\n")
    write(ws / "test_limit.py", """
        import yaml
        LIMIT = yaml.safe_load(open("conf.yaml"))["limit"]
        def test_above_two(): assert LIMIT > 2
        def test_below_ten(): assert LIMIT < 10
        def test_held_even(): assert LIMIT % 2 == 0
    """)
    spec = write(tmp_path / "t.yaml", """
        name: suite
        target: {workspace: tws, files: [conf.yaml], protected: [test_limit.py]}
        mutator: {kind: params, file: conf.yaml, seed: 1, params: {limit: {type: int, min: 0, max: 12}}}
        evaluate:
          kind: tests
          command: python -m pytest -q -p no:cacheprovider --junitxml=report.xml test_limit.py
          holdout: "held_"
        stop: {max_rounds: 6}
    """)
    store = await run_spec(tmp_path / "b.db", spec)
    run = store.get_run("suite")
    base = store.experiments(run["id"])[0]
    assert {r["item"] for r in store.item_results(base["id"])} == {
        "test_limit::test_above_two", "test_limit::test_below_ten"}
    held = store.experiments_of_kind(run["id"], "holdout")[0]
    assert [r["item"] for r in store.item_results(held["id"])] == ["test_limit::test_held_even"]

