"""Noise-robust decisions inside real runs: real workspaces, subprocess evaluations, SQLite.

Most workspaces here score `loss = <true loss> + noise`, where the noise of the n-th evaluation
is scripted (a list) or drawn from random.Random(n): every run is deterministic, yet every
evaluation is a real `python score.py` in a staged copy, counted in a file outside the copy.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.export import export_md
from engine.host import Host
from engine.loop import RunLoop
from engine.spec import load_spec
from engine.store import Store
from tests.conftest import write


def noisy_workspace(tmp: Path, true_loss: str, noise: list[float | str] | float) -> Path:
    """params.yaml (x, y, z) and a score.py printing `METRIC loss=`; `noise` is a script of
    per-evaluation noise (zero after it ends; "crash" exits 3) or the sd of seeded noise."""
    ws = tmp / "ws"
    write(ws / "params.yaml", "x: 1\ny: a\nz: red\n")
    (tmp / "noise.json").write_text(json.dumps(noise))
    write(ws / "score.py", f"""
        import json, pathlib, random, yaml
        p = yaml.safe_load(open("params.yaml"))
        count = pathlib.Path({str(tmp / "count")!r})
        n = int(count.read_text()) if count.exists() else 0
        count.write_text(str(n + 1))
        noise = json.loads(pathlib.Path({str(tmp / "noise.json")!r}).read_text())
        if isinstance(noise, list):
            e = noise[n] if n < len(noise) else 0.0
            if e == "crash":
                raise SystemExit(3)
        else:
            e = random.Random(1000 + n).gauss(0, noise)
        print(f"METRIC loss={{{true_loss} + e}}")
    """)
    return ws


def evaluations(tmp: Path) -> int:
    count = tmp / "count"
    return int(count.read_text()) if count.exists() else 0


def spec_file(tmp: Path, decide: str, max_rounds: int, seed: int = 3, name: str = "noisy") -> Path:
    path = tmp / f"{name}.yaml"
    write(path, f"""
        name: {name}
        target: {{workspace: ws, files: [params.yaml], protected: [score.py]}}
        mutator:
          kind: params
          file: params.yaml
          seed: {seed}
          params:
            x: {{type: int, min: 0, max: 14}}
            y: {{type: choice, values: [a, b, c, d, e]}}
            z: {{type: choice, values: [red, green, blue]}}
        evaluate: {{kind: metric, command: python score.py, metric: loss, direction: minimize}}
        decide: {decide}
        stop: {{max_rounds: {max_rounds}, max_failures: 50}}
    """)
    return path


async def run(db: Path, spec: Path) -> tuple[Store, RunLoop]:
    store = Store(db)
    host = Host(store)
    loop = host.add(load_spec(spec))
    await host.run_until_done()
    return store, loop


def rows(store: Store) -> list[dict]:
    return store.experiments(store.get_run("noisy")["id"])


def decision(row: dict) -> dict:
    return json.loads(row["decision_json"] or "{}")


def params_of(store: Store, row: dict) -> dict:
    import yaml

    files = store.version_files(row["id"])
    return yaml.safe_load(files["params.yaml"]) if "params.yaml" in files else {}


# ---------------------------------------------------------------- noise floor


async def test_noise_floor_is_measured_at_start_stored_and_logged(tmp_path):
    noisy_workspace(tmp_path, "5", [0.0, 0.2, -0.2])
    store, _ = await run(tmp_path / "a.db", spec_file(tmp_path, "{rule: margin}", max_rounds=1))
    run_row = store.get_run("noisy")
    noise = json.loads(run_row["noise_json"])
    assert noise["repeats"] == 3 and noise["scores"] == [5.0, 5.2, 4.8]
    assert abs(noise["sd"] - 0.2) < 1e-9 and noise["mean"] == 5.0
    lines = [e["line"] for e in store.events(run_row["id"])]
    assert "noise floor: sd 0.2 over 3 baseline evaluations (mean 5)" in lines
    baseline = rows(store)[0]
    assert decision(baseline)["scores"] == [5.0, 5.2, 4.8] and baseline["score"] == 5.0
    assert evaluations(tmp_path) == 4  # three for the floor, one candidate


async def test_original_rule_can_skip_the_noise_floor(tmp_path):
    noisy_workspace(tmp_path, "5", [0.0])
    store, _ = await run(tmp_path / "a.db", spec_file(
        tmp_path, "{rule: greater, noise_repeats: 1}", max_rounds=1))
    noise = json.loads(store.get_run("noisy")["noise_json"])
    assert noise["repeats"] == 1 and noise["sd"] is None
    assert any("noise floor not measured" in e["line"] for e in store.events())
    assert evaluations(tmp_path) == 2


# ---------------------------------------------------------------- margin vs greater


async def test_margin_keeps_real_improvements_and_far_less_noise_than_greater(tmp_path):
    # x is worth a whole unit of loss per step (5 noise sd); y and z change nothing at all.
    nulls_kept = {}
    for rule, decide in (("greater", "{rule: greater}"), ("margin", "{rule: margin, repeats: 2}")):
        folder = tmp_path / rule
        noisy_workspace(folder, "abs(p['x'] - 7)", 0.2)
        store, _ = await run(folder / "a.db", spec_file(folder, decide, max_rounds=14, seed=5))
        kept = [r for r in rows(store) if r["verdict"] == "kept"]
        nulls_kept[rule] = [r["description"] for r in kept if "x " not in r["description"]]
        if rule == "margin":
            real = [r for r in kept if r["description"].startswith("x ")]
            assert real and all("×se" in r["reason"] and "(2 repeats" in r["reason"] for r in real)
            best = params_of(store, store.experiment(store.get_run("noisy")["best_experiment"]))
            assert abs(best["x"] - 7) <= 1
    assert len(nulls_kept["greater"]) >= 2 > len(nulls_kept["margin"]), nulls_kept


# ---------------------------------------------------------------- early stop and confirm


async def test_repeats_stop_early_for_a_clearly_worse_candidate(tmp_path):
    noisy_workspace(tmp_path, "5", [0.0, 0.1, -0.1, 3.0])
    store, _ = await run(tmp_path / "a.db", spec_file(
        tmp_path, "{rule: margin, repeats: 3}", max_rounds=1))
    cand = rows(store)[1]
    assert cand["verdict"] == "reverted"
    assert cand["reason"].startswith("stopped after 1 of 3 repeats: clearly worse")
    assert decision(cand)["early_stop"] is True and decision(cand)["repeats"] == 1
    assert evaluations(tmp_path) == 3 + 1  # two repeats saved


async def test_confirm_re_evaluates_a_would_be_winner_before_keeping_it(tmp_path):
    # #2 wins and holds on its confirmation; #3 wins once, then its confirmation falls back.
    noisy_workspace(tmp_path, "5", [0.0, 0.1, -0.1, -3.0, -3.0, -6.0, 0.0])
    store, _ = await run(tmp_path / "a.db", spec_file(
        tmp_path, "{rule: margin, confirm: true, retest: 0}", max_rounds=2))
    first, second = rows(store)[1:3]
    assert first["verdict"] == "kept" and first["reason"].startswith("confirmed: gain +3")
    assert decision(first)["scores"] == [2.0, 2.0] and decision(first)["confirmed"] is True
    assert second["verdict"] == "reverted" and second["reason"].startswith("not confirmed: ")
    assert evaluations(tmp_path) == 3 + 2 + 2
    assert store.get_run("noisy")["best_experiment"] == first["id"]


# ---------------------------------------------------------------- retest


async def test_a_marginal_candidate_is_retested_in_a_new_row_that_references_it(tmp_path):
    # Floor sd 0.1 (2 df): the bar is 4.5×se 0.115 = 0.52; a gain of 0.4 is marginal.
    noisy_workspace(tmp_path, "5", [0.0, 0.1, -0.1, -0.4, 0.0])
    store, _ = await run(tmp_path / "a.db", spec_file(tmp_path, "{rule: margin}", max_rounds=3))
    baseline, marginal, retest, fresh = rows(store)
    assert marginal["verdict"] == "retest"
    assert marginal["reason"].startswith("marginal: gain +0.4 ≤ 4.5×se 0.115")
    assert marginal["reason"].endswith("; will retest")
    assert retest["description"] == f"retest of #{marginal['id']}: {marginal['description']}"
    assert retest["verdict"] == "reverted" and retest["diff"] == marginal["diff"]
    assert decision(retest)["retest_of"] == marginal["id"] and decision(retest)["attempt"] == 1
    assert retest["parent"] == baseline["id"] and retest["round"] == 2
    assert store.version_files(retest["id"]) == store.version_files(marginal["id"])
    assert fresh["description"] != marginal["description"]  # the mutator moved on
    assert store.pending_retests(store.get_run("noisy")["id"]) == []
    changelog = "".join(export_md(store, store.get_run("noisy")))
    assert "| retest | " in changelog and "will retest" in changelog


async def test_a_retest_waiting_at_a_stop_runs_after_the_restart(tmp_path):
    noisy_workspace(tmp_path, "5", [0.0, 0.1, -0.1, -0.4, 0.0])
    spec = spec_file(tmp_path, "{rule: margin}", max_rounds=1)
    store, _ = await run(tmp_path / "a.db", spec)
    assert [r["verdict"] for r in rows(store)] == ["baseline", "retest"]
    spec.write_text(spec.read_text().replace("max_rounds: 1", "max_rounds: 2"))
    store, loop = await run(tmp_path / "a.db", spec)
    retest = rows(store)[2]
    assert retest["description"].startswith(f"retest of #{rows(store)[1]['id']}: ")
    assert evaluations(tmp_path) == 3 + 1 + 1  # no second baseline: the floor was restored
    assert loop.policy.noise is not None and loop.policy.noise.scores == [5.0, 5.1, 4.9]


# ---------------------------------------------------------------- re-evaluation


async def test_the_best_is_re_evaluated_every_k_rounds_in_its_own_row(tmp_path):
    # A lucky baseline (mean 4.5); two worse candidates; the re-evaluation finds 5.2.
    noisy_workspace(tmp_path, "5", [-0.5, -0.4, -0.6, 1.0, 1.0, 0.2, 0.3, 0.1])
    store, _ = await run(tmp_path / "a.db", spec_file(
        tmp_path, "{rule: margin, reeval_every: 2}", max_rounds=3))
    kinds = [(r["kind"], r["verdict"]) for r in rows(store)]
    assert kinds == [("baseline", "baseline"), ("candidate", "reverted"),
                     ("candidate", "reverted"), ("reeval", "reevaluated")]
    reeval = rows(store)[3]
    assert reeval["parent"] == rows(store)[0]["id"] and reeval["round"] == 3
    assert reeval["description"] == f"re-evaluate #{rows(store)[0]['id']}"
    assert reeval["reason"].startswith("re-evaluated: 4.5 (3 repeats) → 5.2 (3 repeats)")
    assert "looks lucky" in reeval["reason"]
    assert abs(reeval["delta"] - 0.7) < 1e-9
    assert abs(store.get_run("noisy")["best_score"] - 5.2) < 1e-9
    assert json.loads(store.get_run("noisy")["noise_json"])["df"] == 4  # the floor learned


# ---------------------------------------------------------------- paired on a checklist


async def test_paired_rule_keeps_a_fix_and_reverts_changes_that_do_nothing(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "params.yaml", "greeting: hi\ncolor: red\n")
    write(ws / "gen.py", """
        import sys, yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"{p['greeting']} in {p['color']}: answer to {sys.argv[1]}")
    """)
    spec = tmp_path / "noisy.yaml"
    write(spec, """
        name: noisy
        target: {workspace: ws, files: [params.yaml], protected: [gen.py]}
        mutator:
          kind: params
          file: params.yaml
          seed: 2
          params:
            greeting: {type: choice, values: [hi, please, hey]}
            color: {type: choice, values: [red, green, blue, grey]}
        evaluate:
          kind: checklist
          produce: {kind: command, command: "python gen.py {input}"}
          inputs: [one, two, three, four, five, six, seven, eight]
          items:
            - {name: polite, contains: please}
            - {name: on-topic, regex: "answer to \\\\w+"}
            - {name: short, words: {max: 8}}
        decide: {rule: paired}
        stop: {max_rounds: 5, target: 1.1}
    """)
    store, _ = await run(tmp_path / "a.db", spec)
    decided = [r for r in rows(store)[1:] if r["verdict"] in ("kept", "reverted", "retest")]
    kept = [r for r in decided if r["verdict"] == "kept"]
    # (the params mutator may move the colour in the same candidate: it does nothing)
    assert len(kept) == 1 and "greeting hi → please" in kept[0]["description"]
    assert "8 better, 0 worse of 24 answers, CMH p" in kept[0]["reason"]
    assert decision(kept[0])["pairs"] == 24 and decision(kept[0])["p"] < 0.001
    nothing = [r for r in decided if "greeting" not in r["description"]]
    assert nothing and all(r["verdict"] == "reverted" for r in nothing)
    assert all("0 better, 0 worse of 24 answers" in r["reason"] for r in nothing)


# ---------------------------------------------------------------- failures


async def test_a_crash_between_repeats_or_in_a_re_evaluation_is_recorded_not_fatal(tmp_path):
    noisy_workspace(tmp_path, "5", [0.0, 0.1, -0.1, 0.0, "crash", "crash", 0.0, 0.0])
    store, _ = await run(tmp_path / "a.db", spec_file(
        tmp_path, "{rule: margin, repeats: 2, early_stop: false, reeval_every: 1}", max_rounds=3))
    got = [(r["kind"], r["verdict"]) for r in rows(store)]
    assert got == [("baseline", "baseline"), ("candidate", "crashed"), ("reeval", "crashed"),
                   ("candidate", "reverted")]
    assert "no `loss` metric in the output (exit 3)" in rows(store)[1]["reason"]
    assert store.get_run("noisy")["status"] == "done"
    assert store.get_run("noisy")["best_score"] == 5.0  # a failed re-evaluation changes nothing
    assert evaluations(tmp_path) == 8  # the crashed re-evaluation is not retried every round
