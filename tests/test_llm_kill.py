"""Money under SIGKILL: every model call is journaled (engine/calls.py), so a real engine
killed with calls in flight and resumed keeps the books: the run's total is the sum over its
experiments; what the server billed for calls the engine saw answered is counted exactly;
a call in flight at the kill is counted at an upper bound of its cost, and said to be."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, cli_env, run_cli
from fake_anthropic import (
    HEADLINE,
    PRICE_TABLE,
    PRICES,
    FakeAnthropic,
    Reply,
    answers,
    change,
    drive,
    hang,
    judged_items,
    page_spec,
    page_workspace,
)

from engine.host import Host
from engine.spec import load_spec
from engine.store import Store

#: The judge reply a kill cuts off: delivered by the server (billed), never read by the engine.
CUT_TOKENS = 777

JUDGED = f"""
evaluate:
  kind: checklist
  produce: {{kind: command, command: cat page.md}}
  items:
    - name: friendly
      question: Is the tone friendly?
  judge: {{max_retries: 1, retry_backoff_s: 0.01, timeout_s: 30, prices: {PRICES}}}
"""


class Script:
    """The stand-in's model: proposes the same headline edit and judges no page friendly (so
    no target is reached and every candidate is a tie). Once `armed`, the next candidate's
    judge reply waits for `release`, and the proposal after it (made ahead) hangs."""

    def __init__(self) -> None:
        self.armed = False
        self.proposals = 0
        #: What is in flight: "judge" (its reply held back), "mutator" (hanging).
        self.holding: set[str] = set()
        self.release = threading.Event()
        self._hold: set[str] = set()

    def __call__(self, body: dict) -> Reply:
        if (body.get("tool_choice") or {}).get("name") == "propose_change":
            self.proposals += 1
            if "mutator" in self._hold:
                self._hold.discard("mutator")
                self.holding.add("mutator")
                return hang(60)
            if self.armed:
                self.armed, self._hold = False, {"judge", "mutator"}
            return change("Put a number in the headline", [HEADLINE],
                          tokens_in=500 + self.proposals, tokens_out=60)
        tokens_in = 70
        if "judge" in self._hold:
            self._hold.discard("judge")
            self.holding.add("judge")
            self.release.wait(60)  # (until the engine is frozen)
            tokens_in = CUT_TOKENS
        return answers([(i, "no", "cold") for i in judged_items(body)], tokens_in=tokens_in,
                       tokens_out=11)


def engine(db: Path, spec: Path, server: FakeAnthropic) -> subprocess.Popen[str]:
    env = cli_env(**server.env())
    return subprocess.Popen([sys.executable, "-m", "tui", "--db", str(db), "run", str(spec),
                             "--headless"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for(what: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout  # (a loaded machine starts Python slowly)
    while not what():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.02)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert "Traceback" not in proc.stderr.read()
    proc.stderr.close()


def test_calls_in_flight_at_a_kill_are_counted_and_the_books_balance(api: FakeAnthropic,
                                                                       tmp_path: Path):
    ws = page_workspace(tmp_path)
    spec = page_spec(ws, evaluate=JUDGED, stop="max_rounds: 4", prices=PRICES, ahead=1)
    db = tmp_path / "ar.db"
    api.responder = script = Script()
    script.armed = True
    # A kill while a candidate's judge reply is on its way (the server bills it, the engine,
    # frozen, never reads it; the candidate's mutator call was answered before) and the next
    # proposal, made ahead, waits for the model (no experiment row exists for it yet).
    proc = engine(db, spec, api)
    wait_for(lambda: script.holding == {"judge", "mutator"}, proc)
    os.kill(proc.pid, signal.SIGSTOP)
    script.release.set()
    wait_for(lambda: any(b["input_tokens"] == CUT_TOKENS for b in api.billed), proc)
    kill(proc)
    # The engine resumes and runs to the end (in this process: one SDK import fewer).
    store = Store(db)
    host = Host(store)
    host.add(load_spec(spec))
    asyncio.run(drive(host, 60))
    billed = api.billed_usd(PRICE_TABLE)
    cut = [b for b in api.billed if b["input_tokens"] == CUT_TOKENS]
    cut_usd = (CUT_TOKENS * PRICE_TABLE["input"] + 11 * PRICE_TABLE["output"]) / 1e6
    assert len(cut) == 1
    [run] = store.runs()
    exps = store.experiments(run["id"])
    calls = store._rows("SELECT * FROM calls WHERE run_id = ?", [run["id"]])
    # The run's total is the sum over its experiments; nothing is left running or pending.
    assert run["cost_usd"] == pytest.approx(sum(e["cost_usd"] for e in exps), abs=1e-12)
    assert not store.in_flight(run["id"])
    assert {c["state"] for c in calls} <= {"done", "estimated", "failed"}
    assert all(c["accounted"] for c in calls)
    # Exactly what was billed for every call the engine saw answered...
    done = sum(c["cost_usd"] for c in calls if c["state"] == "done")
    assert done == pytest.approx(billed - cut_usd, abs=1e-12)
    # ...and the two calls cut short at their upper bounds: the judge's (billed) and the
    # mutator's (never answered), each at least what it cost, within its estimate.
    estimated = [c for c in calls if c["state"] == "estimated"]
    assert sorted(c["role"] for c in estimated) == ["checklist judge", "llm mutator"]
    assert all(c["cost_usd"] == c["estimate_usd"] > cut_usd for c in estimated)
    assert billed <= run["cost_usd"] <= (billed - cut_usd + sum(c["cost_usd"] for c in estimated)
                                         + 1e-12)
    # Each went to an experiment: the judged candidate (with its own mutator call) and a
    # row for the proposal made ahead.
    by_id = {e["id"]: e for e in exps}
    judged = by_id[next(c["experiment_id"] for c in estimated if "judge" in c["role"])]
    assert judged["verdict"] == "interrupted" and judged["kind"] == "candidate"
    own = [c for c in calls if c["experiment_id"] == judged["id"]]
    assert sorted(c["role"] for c in own) == ["checklist judge", "llm mutator"]
    assert judged["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in own), abs=1e-12)
    proposing = by_id[next(c["experiment_id"] for c in estimated if "mutator" in c["role"])]
    assert proposing["verdict"] == "interrupted"
    assert "mutator was proposing" in proposing["description"]
    store.close()
    # Status and the exports say how much is estimated.
    shown = run_cli("--db", str(db), "status")
    assert "estimated" in shown.stdout, shown.stdout
    status = json.loads(run_cli("--db", str(db), "status", "--json").stdout)
    assert status[0]["cost_estimated_usd"] == pytest.approx(
        sum(c["cost_usd"] for c in estimated), abs=1e-6)
