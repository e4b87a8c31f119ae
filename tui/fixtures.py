"""Synthetic stores with fixed data: for snapshot tests (deterministic pictures), and for the
benchmarks (100,000 experiments over 10 runs), written through the Store's own methods; and
a bounded wait for Pilot tests."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.store import Store

#: Every timestamp is relative to this, so pictures do not depend on the clock.
EPOCH = 1_700_000_000.0
ITEMS = ("accurate", "fast", "small", "not-overfit")
PARAMS = ("hidden", "lr", "momentum", "l2", "epochs", "batch_size")


def spec_json(name: str, kind: str, max_rounds: int, slots: int = 1) -> str:
    """The parts of a spec the app reads (stop rules, evaluator kind, workers)."""
    evaluate = ({"kind": "metric", "metric": "load_ms", "direction": "minimize",
                 "command": "python load.py"} if kind == "metric" else
                {"kind": "checklist", "items": [{"name": i} for i in ITEMS]})
    return json.dumps({"name": name, "evaluate": evaluate,
                       "stop": {"target": 1.0 if kind == "checklist" else None, "streak": 3,
                                "max_rounds": max_rounds, "max_minutes": 60, "plateau": 40,
                                "max_failures": 5},
                       "workers": [{"kind": "local", "slots": slots}]})


def build_store(path: Path, *, runs: int = 2, experiments: int = 120, seed: int = 7,
                status: str = "done", items_every: int | None = None,
                live: bool = False) -> Store:
    """A store of `runs` finished runs sharing `experiments` experiments between them.

    Even runs are checklist runs (maximise a pass rate), odd runs metric runs (minimise a
    load time, with a noise band). Item results are written for the best versions and the
    last few experiments (and every `items_every`-th, if given). With `live`, the first run
    is still running with two experiments in flight (hold its lock to make it look alive).
    """
    rng = random.Random(seed)
    store = Store(path)
    per_run = max(1, experiments // runs)
    next_id = store.max_experiment_id() + 1
    for r in range(runs):
        kind = "checklist" if r % 2 == 0 else "metric"
        name = f"{'classifier' if kind == 'checklist' else 'sqlite-load'}-{r + 1}"
        direction = "maximize" if kind == "checklist" else "minimize"
        run_id = store.create_run(name, spec_path=f"checklists/{name}.yaml",
                                  spec_json=spec_json(name, kind, per_run + 10,
                                                      slots=2 if live and r == 0 else 1),
                                  workspace=f"/work/{name}", direction=direction,
                                  target=1.0 if kind == "checklist" else None)
        rows, items = [], []
        best = 0.5 if kind == "checklist" else 17_500.0
        best_id = next_id
        t = EPOCH + r * 3600
        for n in range(per_run):
            exp_id = next_id
            next_id += 1
            if n == 0:
                score, verdict, reason, desc = best, "baseline", "starting point", "baseline"
            else:
                param, old, new = rng.choice(PARAMS), rng.randint(1, 99), rng.randint(1, 99)
                desc = f"{param} {old} → {new}"
                roll = rng.random()
                if roll < 0.04:
                    score, verdict, reason = None, "crashed", "exit code 1"
                elif kind == "checklist":
                    score = round(min(1.0, max(0.0, best + rng.choice([-2, -1, 0, 0, 1]) / 12)), 4)
                    verdict = "kept" if score > best else "reverted"
                    reason = f"better by {score - best:.4g}" if score > best else "tie" if \
                        score == best else f"worse by {best - score:.4g}"
                else:
                    score = round(best * rng.uniform(0.9, 1.6) if rng.random() < 0.85
                                  else best * rng.uniform(0.55, 0.98), 1)
                    verdict = "kept" if score < best else "reverted"
                    reason = f"better by {best - score:.4g}" if score < best else \
                        f"worse by {score - best:.4g}"
            in_flight = live and r == 0 and n >= per_run - 2
            if in_flight:
                score, verdict, reason = None, "running", None
            delta = None if score is None or n == 0 else round(score - best, 6)
            parent = None if n == 0 else best_id
            if verdict == "kept":
                best, best_id = score, exp_id
            duration = round(rng.uniform(0.2, 4.0), 2)
            rows.append({"id": exp_id, "run_id": run_id, "round": n, "parent": parent,
                         "kind": "baseline" if n == 0 else "candidate", "verdict": verdict,
                         "reason": reason, "description": desc, "score": score, "delta": delta,
                         "worker": f"local:{1 + n % 2}", "started": t,
                         "finished": None if in_flight else t + duration,
                         "duration": None if in_flight else duration,
                         "metrics_json": json.dumps({"load_ms": score}) if kind == "metric"
                         and score is not None else None,
                         "diff": f"--- a/params.yaml\n+++ b/params.yaml\n@@ -1 +1 @@\n"
                                 f"-{param}: {old}\n+{param}: {new}\n" if n else ""})
            t += duration + 0.5
            if kind == "checklist" and score is not None and (
                    verdict in ("baseline", "kept") or n >= per_run - 3
                    or (items_every and n % items_every == 0)):
                for i, item in enumerate(ITEMS):
                    for sample in range(3):
                        passed = int(rng.random() < min(1.0, score + (0.25 if i % 2 else -0.1)))
                        items.append((exp_id, item, sample, passed))
        store.bulk_add_experiments(rows, items)
        noise = json.dumps({"sd": 1.5, "n": 5}) if kind == "metric" else None
        running = live and r == 0
        store.update_run(run_id, status="running" if running else status, best_experiment=best_id,
                         best_score=best, baseline_score=rows[0]["score"], rounds=per_run - 1,
                         cost_usd=0.0123 * per_run if running else 0.0,
                         started=EPOCH + r * 3600, finished=None if running else t,
                         elapsed=t - EPOCH - r * 3600, heartbeat=t if running else None,
                         stop_reason="max rounds reached" if status == "done" and not running
                         else None, noise_json=noise)
    return store


async def wait_until(pilot: Any, predicate: Callable[[], Any], timeout: float = 15.0,
                     what: str = "") -> Any:
    """Let the app run until `predicate()` is truthy; fail after `timeout` (tests stay bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")


def build_tree_store(path: Path, *, versions: int = 500, tried: int = 4, width: int = 4,
                     seed: int = 7) -> tuple[Store, int]:
    """One finished frontier-search run whose tree has `versions` versions (the baseline and
    keeps, each made from a random earlier one) and `tried` reverted candidates under each:
    the tree screen at size. Returns the store and the run's id."""
    rng = random.Random(seed)
    store = Store(path)
    spec = json.loads(spec_json("tree", "checklist", versions * (tried + 1)))
    spec["search"] = {"strategy": "frontier", "width": width, "pick": "softmax"}
    run_id = store.create_run("tree", spec_path="checklists/tree.yaml", spec_json=json.dumps(spec),
                              workspace="/work/tree", direction="maximize", target=None)
    next_id = store.max_experiment_id() + 1
    rows: list[dict[str, Any]] = []
    scores: dict[int, float] = {}
    t = EPOCH
    for v in range(versions):
        parent = None if v == 0 else rng.choice(list(scores))
        base = 0.3 if parent is None else scores[parent]
        score = round(base + (rng.uniform(0.0, 0.01) if parent else 0.0), 6)
        kids = [(next_id, parent, score, "baseline" if v == 0 else "kept")]
        next_id += 1
        for _ in range(tried if v else 0):
            kids.append((next_id, parent, round(base - rng.uniform(0, 0.05), 6), "reverted"))
            next_id += 1
        for exp_id, under, value, verdict in kids:
            rows.append({"id": exp_id, "run_id": run_id, "round": len(rows), "parent": under,
                         "kind": "baseline" if under is None else "candidate",
                         "verdict": verdict, "reason": "", "score": value,
                         "delta": None if under is None else round(value - scores[under], 6),
                         "description": f"{rng.choice(PARAMS)} {rng.randint(1, 99)}",
                         "worker": "local:1", "started": t, "finished": t + 1, "duration": 1.0})
            t += 1.5
        scores[kids[0][0]] = score
    store.bulk_add_experiments(rows)
    best = max(scores, key=lambda i: scores[i])
    store.update_run(run_id, status="done", best_experiment=best, best_score=scores[best],
                     baseline_score=rows[0]["score"], rounds=len(rows) - 1, started=EPOCH,
                     finished=t, elapsed=t - EPOCH, stop_reason="max rounds reached")
    return store, run_id


#: Skill names for a library store (the runs one `each:` spec makes over `skills/*/SKILL.md`).
SKILLS = ("landing", "pricing", "onboarding", "refund", "summary", "triage", "release",
          "search", "billing", "support", "review", "outline", "invoice", "escalate", "digest",
          "handoff", "intake", "changelog", "faq", "migrate")
EDITS = ("tighten the opening line", "add a worked example", "name the output format",
         "drop the redundant caveat", "ask for sources", "split step 3 in two",
         "say what not to do", "shorter bullet list", "lead with the answer",
         "define the audience")


def _starts(first: float, step: float, count: int, now: float) -> list[float]:
    """Start times `step` apart from `first`, the last third of them (at least one) moved
    into today if they fell before local midnight: "today" has keeps at any hour (just
    after midnight, every round of a short run was yesterday's)."""
    from tui.roster import midnight

    starts = [first + n * step for n in range(count)]
    today, late = midnight(now), max(1, count // 3)
    if starts[count - late] < today:  # (all of them, so the rounds stay in order)
        for k, n in enumerate(range(count - late, count)):
            starts[n] = today + (now - today) * (k + 1) / (late + 1)
    return starts


def build_library(path: Path, *, runs: int = 200, per_run: int = 60, seed: int = 11,
                  now: float | None = None, budget: dict[str, float] | None = None) -> Store:
    """A library store: `runs` checklist runs from one `each:` spec (`lib-<skill>`), each with
    `per_run` LLM-judged experiments over the last day (so "today" has keeps and cost).
    Four in five runs are live (running, or paused as if resting), the rest done.
    With `budget`, every run's spec carries it as `library:` (the shared budget)."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    store = Store(path)
    next_id = store.max_experiment_id() + 1
    for r in range(runs):
        name = f"lib-{SKILLS[r % len(SKILLS)]}" + (f"-{r // len(SKILLS)}" if r >= len(SKILLS)
                                                  else "")
        spec = json.loads(spec_json(name, "checklist", 10_000))
        spec["stop"] = {"plateau": 30, "max_failures": 5}
        if budget:
            spec["library"] = budget
        run_id = store.create_run(name, spec_path="lib.yaml", spec_json=json.dumps(spec),
                                  workspace=f"/work/skills/{name[4:]}/SKILL.md",
                                  direction="maximize", target=None)
        rows, items = [], []
        best, best_id = round(rng.uniform(0.3, 0.7), 4), next_id
        # Spread over the day before `now`: a run's later rounds land today.
        t = now - rng.uniform(6, 30) * 3600
        step = (now - 60 - t) / per_run
        starts = _starts(t, step, per_run, now)
        for n in range(per_run):
            t = starts[n]
            exp_id = next_id
            next_id += 1
            cost = round(rng.uniform(0.002, 0.012), 4)
            if n == 0:
                score, verdict, desc = best, "baseline", "baseline"
            else:
                desc = rng.choice(EDITS)
                score = round(min(1.0, max(0.0, best + rng.choice([-2, -1, -1, 0, 1]) / 24)), 4)
                verdict = "kept" if score > best else "reverted"
            delta = None if n == 0 else round(score - best, 6)
            if verdict == "kept":
                best, best_id = score, exp_id
            duration = round(rng.uniform(2.0, 9.0), 2)
            rows.append({"id": exp_id, "run_id": run_id, "round": n, "parent": best_id,
                         "kind": "baseline" if n == 0 else "candidate", "verdict": verdict,
                         "reason": "", "description": desc, "score": score, "delta": delta,
                         "worker": "local:1", "started": t,
                         "finished": min(t + duration, now),
                         "duration": duration, "cost_usd": cost, "metrics_json": None,
                         "diff": f"--- a/SKILL.md\n+++ b/SKILL.md\n@@ -1 +1 @@\n-x\n+{desc}\n"})
            if verdict in ("baseline", "kept"):
                items += [(exp_id, item, s, int(rng.random() < score))
                          for item in ITEMS for s in range(3)]
        t = min(starts[-1] + step, now)
        store.bulk_add_experiments(rows, items)
        status = "done" if r % 5 == 4 else "paused" if r % 5 == 3 else "running"
        store.update_run(run_id, status=status, best_experiment=best_id, best_score=best,
                         baseline_score=rows[0]["score"], rounds=per_run - 1,
                         cost_usd=round(sum(row["cost_usd"] for row in rows), 4),
                         started=rows[0]["started"], elapsed=t - rows[0]["started"],
                         heartbeat=now if status != "done" else None,
                         finished=t if status == "done" else None,
                         stop_reason="resting: plateau" if status == "paused" else
                         "plateau reached" if status == "done" else None)
    return store
