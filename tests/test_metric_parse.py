"""Metrics the way scripts print them: METRIC lines, Karpathy's `key: value` summary block,
the last JSON line; every other number kept; constraints on secondary metrics."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.evaluators.metric import constraint_breach, parse_all, parse_metric
from engine.host import Host
from engine.model import Evaluation
from engine.spec import load_spec, parse_spec
from engine.store import Store
from tests.conftest import metric_spec, run_cli, write

#: The summary block karpathy/autoresearch's train.py prints at the end (its program.md
#: documents it), after a progress line redrawn in place with \r.
KARPATHY_TAIL = (
    "Time budget: 300s\n"
    "step 00001 (0.1%) | loss: 9.0 | lrm: 1.00\rstep 00953 (100.0%) | loss: 3.1 | lrm: 0.10    \n"
    "---\n"
    "val_bpb:          0.997900\n"
    "training_seconds: 300.1\n"
    "total_seconds:    325.9\n"
    "peak_vram_mb:     45060.2\n"
    "mfu_percent:      39.80\n"
    "total_tokens_M:   499.6\n"
    "num_steps:        953\n"
    "num_params_M:     50.3\n"
    "depth:            8\n"
)


def test_karpathy_summary_block_is_read_without_a_regex():
    assert parse_metric(KARPATHY_TAIL, "val_bpb") == 0.9979
    metrics = parse_all(KARPATHY_TAIL, "val_bpb")
    assert list(metrics)[0] == "val_bpb"
    assert metrics == {"val_bpb": 0.9979, "training_seconds": 300.1, "total_seconds": 325.9,
                       "peak_vram_mb": 45060.2, "mfu_percent": 39.8, "total_tokens_M": 499.6,
                       "num_steps": 953, "num_params_M": 50.3, "depth": 8}
    # Prose with a colon and a non-number, progress lines and `Time budget: 300s` are not metrics.
    assert "loss" not in metrics and "Time budget" not in metrics


def test_forms_are_read_in_order_and_the_last_occurrence_wins():
    out = "loss: 5\nloss: 4\n{\"loss\": 2, \"acc\": 0.5}\nMETRIC loss=3\nloss=1\n"
    assert parse_metric(out, "loss") == 3  # a METRIC line beats every other form
    assert parse_metric("loss: 5\nloss=4\n{\"loss\": 2}\n", "loss") == 4  # then the last k: v
    assert parse_metric("loss is 5\n{\"loss\": 2}\n{\"other\": 1}\n", "loss") is None  # last JSON
    assert parse_metric("{\"loss\": 2}\nok\n", "loss") == 2
    assert parse_all(out, "loss") == {"loss": 3, "acc": 0.5}


def test_bad_values_are_skipped_never_zero():
    assert parse_metric("loss: nan\nloss: inf\n", "loss") is None
    assert parse_metric("loss: 1,234\n", "loss") is None
    assert parse_metric("METRIC loss=oops\nloss: 2\n", "loss") == 2
    assert parse_metric('{"loss": true}\n', "loss") is None
    assert parse_metric("a regex: 7 ms\n", "x", r"regex: (\d+) ms") == 7


@given(st.text(max_size=300))
def test_any_output_parses_without_an_exception(text):
    values = parse_all(text, "m")
    assert all(isinstance(v, float | int) for v in values.values())
    assert len(values) <= 100


def test_constraint_breach_names_the_metric_and_bound():
    spec = parse_spec("""
name: c
target: {files: [a]}
mutator: {kind: agent, command: x}
evaluate:
  kind: metric
  command: x
  metric: val_bpb
  constraints: [{metric: peak_vram_mb, max: 80000}, {metric: mfu_percent, min: 10}]
""")
    ok = Evaluation("ok", score=1, metrics={"peak_vram_mb": 45060.2, "mfu_percent": 39.8})
    big = Evaluation("ok", score=1, metrics={"peak_vram_mb": 81234.5, "mfu_percent": 39.8})
    assert constraint_breach(spec.evaluate, [ok]) is None
    assert constraint_breach(spec.evaluate, [ok, big]) == "constraint: peak_vram_mb 81234.5 > max 80000"
    assert "mfu_percent 5 < min 10" in constraint_breach(
        spec.evaluate, [Evaluation("ok", metrics={"peak_vram_mb": 1, "mfu_percent": 5})])
    assert "not in the output" in constraint_breach(spec.evaluate, [Evaluation("ok", metrics={})])


def test_a_constraint_without_a_bound_is_a_spec_error(tmp_path):
    ws = tmp_path / "ws"
    write(ws / "params.yaml", "x: 1\n")
    spec = metric_spec(ws)
    spec.write_text(spec.read_text().replace(
        "  direction: minimize\n", "  direction: minimize\n  constraints: [{metric: mem}]\n"))
    line = spec.read_text().splitlines().index("  constraints: [{metric: mem}]") + 1
    res = run_cli("check", str(spec))
    assert res.returncode == 2
    assert f"{spec}:{line}: evaluate.constraints[0]: constraint on `mem` needs `max` or `min`" \
        in res.stderr, res.stderr


async def test_a_candidate_breaking_a_constraint_is_reverted_with_the_reason(
        tmp_path: Path, params_workspace: Path):
    # The score gets better as x grows toward 7, but memory grows with x too: over 4 it breaks.
    write(params_workspace / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print("---")
        print(f"loss:           {abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3):.6f}")
        print(f"peak_vram_mb:   {1000.0 * p['x']:.1f}")
    """)
    spec = metric_spec(params_workspace, stop="max_rounds: 12")
    spec.write_text(spec.read_text().replace(
        "  direction: minimize\n",
        "  direction: minimize\n  constraints: [{metric: peak_vram_mb, max: 4000}]\n"))
    store = Store(tmp_path / "a.db")
    host = Host(store)
    host.add(load_spec(spec))
    await host.run_until_done()
    rows = store.experiments(store.get_run("toy")["id"])
    assert rows[0]["verdict"] == "baseline" and rows[0]["score"] == 9
    assert json.loads(rows[0]["metrics_json"]) == {"loss": 9, "peak_vram_mb": 1000.0}
    broken = [r for r in rows if json.loads(r["metrics_json"] or "{}").get("peak_vram_mb", 0) > 4000]
    assert broken, "the seeded params mutator should try x > 4 within 12 rounds"
    for r in broken:
        assert r["verdict"] == "reverted"
        assert r["reason"].startswith("constraint: peak_vram_mb ") and "> max 4000" in r["reason"]
    kept = [r for r in rows if r["verdict"] == "kept"]
    assert all(json.loads(r["metrics_json"])["peak_vram_mb"] <= 4000 for r in kept)
