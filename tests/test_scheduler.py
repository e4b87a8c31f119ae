"""A library's scheduler (engine/scheduler.py): its policy on a simulated library (fixed
seeds), and its caps on a real host — real files, subprocesses and SQLite."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import sys
import time
from pathlib import Path

import pytest

from engine import library
from engine.cli import cmd_status
from engine.handedit import NOTE
from engine.host import Host
from engine.scheduler import Arm, Policy
from engine.spec import SpecError, load_spec
from engine.store import Store
from tests.conftest import REPO, write
from tests.test_library import git


def bench():
    spec = importlib.util.spec_from_file_location("bench_scheduler", REPO / "bench/scheduler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1])
def test_spends_on_the_runs_that_improve_and_starves_none(seed: int):
    sim = bench().simulate
    rr = sim("round-robin", 60, seed, budget_rounds=1200, slots=4)
    ucb = sim("scheduler", 60, seed, budget_rounds=1200, slots=4)
    assert ucb["wasted"] <= 0.5 * rr["wasted"], (ucb, rr)
    assert ucb["gained"] > rr["gained"]
    assert ucb["min_rounds"] >= Policy().tries  # every run was tried enough to be judged


def test_a_plateau_rests_backs_off_and_a_changed_file_wakes():
    policy = Policy(rest_after=4, rest_s=100)
    arm = Arm(1)
    for t in range(4):
        policy.observe(arm, 0.0, 0.01, now=float(t))
    assert arm.resting_since == 3.0 and not policy.ready(arm, now=50.0)
    assert policy.ready(arm, now=103.0)  # the rest is over: a short probe
    for t in range(policy.rest_after // 3):
        policy.observe(arm, 0.0, 0.01, now=110.0 + t)
    assert arm.resting_since == 110.0 and arm.rests == 2  # twice as long this time
    assert not policy.ready(arm, now=300.0) and policy.ready(arm, now=310.0)
    policy.observe(arm, 0.0, 0.01, now=311.0)
    assert arm.resting_since == 311.0
    assert policy.ready(arm, now=312.0, changed=True)  # a person edited the file: as new
    assert (arm.rounds, arm.rests, arm.resting_since) == (0, 0, None)
    policy.observe(arm, 0.5, 0.01, now=313.0)
    assert arm.since_keep == 0


def test_untried_runs_first_then_gain_per_dollar():
    policy = Policy(explore=0.0, tries=1)
    cheap, dear, new = Arm(1), Arm(2), Arm(3)
    policy.observe(cheap, 0.1, 0.01, now=0)
    policy.observe(dear, 0.1, 1.00, now=0)
    assert policy.pick([cheap, dear, new]) is new
    policy.observe(new, 0.0, 0.01, now=0)
    assert policy.pick([dear, new, cheap]) is cheap  # the same gain for a hundredth


SCORE = ("echo s $(date +%s%N) >> {log}; sleep 0.05; echo e $(date +%s%N) >> {log}; "
         "awk '/^x:/{{x=$2}} /^goal:/{{g=$2}} END{{d=x-g; if(d<0)d=-d; print \"METRIC loss=\" d}}'"
         " {{file}}")


def make(tmp_path: Path, lib: str | None, stop: str = "max_rounds: 6") -> Path:
    ws = tmp_path / "ws"
    for name, goal in {"a": 9, "b": 3, "c": 5}.items():
        write(ws / "skills" / name / "SKILL.md", f"x: 1\ngoal: {goal}\n")
    command = SCORE.format(log=tmp_path / "times.log").replace('"', '\\"')
    spec = write(ws / "skill.yaml", f"""
        name: skill
        target: {{each: "skills/*/SKILL.md"}}
        mutator: {{kind: params, seed: 5, params: {{x: {{type: int, min: 0, max: 20}}}}}}
        evaluate:
          kind: metric
          command: "{command}"
          metric: loss
          direction: minimize
        stop: {{{stop}}}
    """)
    if lib is not None:
        spec.write_text(spec.read_text() + f"library: {lib}\n")
    return spec


def host_of(db: Path, spec_path: Path) -> tuple[Store, Host]:
    store = Store(db)
    host = Host(store)
    for one in library.expand_all([load_spec(spec_path)]):
        host.add(one)
    return store, host


async def test_max_parallel_caps_the_library_and_status_says_why(tmp_path: Path):
    spec = make(tmp_path, "{max_parallel: 1, rest_after: 50}")
    store, host = host_of(tmp_path / "a.db", spec)
    seen: set[str] = set()
    printed = io.StringIO()

    async def watch() -> None:
        while True:
            await asyncio.sleep(0.1)
            for run in Store(store.path, readonly=True).runs():
                if run["waiting"] and run["waiting"] not in seen:
                    seen.add(run["waiting"])
                    cmd_status(store.path, False, out=printed)
                    cmd_status(store.path, True, out=printed)

    watcher = asyncio.create_task(watch())
    await host.run_until_done()
    watcher.cancel()
    assert [r["status"] for r in store.runs()] == ["done"] * 3
    assert all(r["rounds"] == 6 for r in store.runs())  # nobody starved
    depth, most = 0, 0
    lines = (tmp_path / "times.log").read_text().split("\n")
    for mark, _ in sorted((line.split() for line in lines if line), key=lambda p: int(p[1])):
        depth += 1 if mark == "s" else -1
        most = max(most, depth)
    assert most == 1  # one evaluation of the library at a time
    assert "waiting: max_parallel (1 busy)" in seen
    assert "(waiting: max_parallel (1 busy))" in printed.getvalue()
    assert '"waiting": "waiting: max_parallel (1 busy)"' in printed.getvalue()  # --json
    assert all(r["waiting"] is None for r in store.runs())  # nothing waits once done


async def test_the_library_budget_stops_or_holds_its_runs(tmp_path: Path):
    spec = make(tmp_path, "{max_cost_usd: 1.0}", stop="max_rounds: 2")
    store, host = host_of(tmp_path / "a.db", spec)
    await host.run_until_done()
    # Money spent before (by a model, say): the library's total is over its cap.
    for run in store.runs():
        store.update_run(run["id"], cost_usd=0.4)
    spec.write_text(spec.read_text().replace("max_rounds: 2", "max_rounds: 20"))
    store, host = host_of(tmp_path / "a.db", spec)
    await host.run_until_done()
    runs = store.runs()
    assert [r["stop_reason"] for r in runs] == ["library budget reached ($1.2000 of $1)"] * 3
    assert [r["rounds"] for r in runs] == [2] * 3  # not one round more
    # The daily cap: today's money is spent, so the runs wait (and say so) until stopped.
    day = make(tmp_path / "day", "{daily_cost_usd: 0.5}", stop="max_rounds: 1")
    store, host = host_of(tmp_path / "day.db", day)
    await host.run_until_done()
    first = store.runs()[0]
    store.conn.execute("UPDATE experiments SET cost_usd = 0.7 WHERE id = ?",
                       [first["best_experiment"]])
    store.commit()
    day.write_text(day.read_text().replace("max_rounds: 1", "max_rounds: 20"))
    store, host = host_of(tmp_path / "day.db", day)  # joins with today's spending read
    task = asyncio.create_task(host.run_until_done())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(
            (r["waiting"] or "").startswith("waiting: library budget") for r in store.runs()):
        await asyncio.sleep(0.1)
    reasons = {r["waiting"] for r in store.runs()}
    host.stop_all()
    await task
    assert reasons == {"waiting: library budget ($0.7000 of $0.5 today)"}
    assert {r["status"] for r in store.runs()} == {"stopped"}
    assert [r["rounds"] for r in store.runs()] == [1] * 3


@pytest.mark.parametrize("value, message", [
    ("{max_parallel: 0}", "library.max_parallel: Input should be greater than or equal to 1"),
    ("{daily_cost_usd: -1}", "library.daily_cost_usd: Input should be greater than 0"),
    ("{max_paralel: 2}", "library.max_paralel"),
])
def test_bad_library_values_name_the_line(tmp_path: Path, value: str, message: str):
    spec = make(tmp_path, value)
    line = spec.read_text().splitlines().index(f"library: {value}") + 1
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert f"{spec}:{line}: {message}" in str(err.value)


def test_library_only_on_a_library_spec(tmp_path: Path):
    spec = make(tmp_path, "{max_parallel: 2}")
    spec.write_text(spec.read_text().replace('{each: "skills/*/SKILL.md"}',
                                             "{files: [skills/a/SKILL.md]}"))
    with pytest.raises(SpecError, match=r"skill.yaml:10: library: only for a spec with "
                                        "target.each"):
        load_spec(spec)


async def test_a_file_edited_by_hand_is_a_new_baseline(tmp_path: Path):
    spec = make(tmp_path, None, stop="max_rounds: 400")  # any library, `library:` or not
    ws = spec.parent
    rel = "skills/a/SKILL.md"
    (ws / rel).write_text("x: 1\ngoal: 1\n")  # at its best already: no keep races the edit
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")
    store, host = host_of(tmp_path / "a.db", spec)
    task = asyncio.create_task(host.run_until_done())
    run_id = store.get_run("skill-a")["id"]

    async def until(check, what: str) -> None:
        deadline = time.monotonic() + 90
        while not check():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    await until(lambda: store.get_run(run_id)["rounds"] >= 3, "rounds before the edit")
    edited = "x: 4\ngoal: 1\n# the tone is warmer now\n"
    (ws / rel).write_text(edited)
    noted = lambda: [r for r in store.experiments(run_id) if r["description"] == NOTE]  # noqa: E731
    await until(lambda: noted() and noted()[0]["verdict"] == "baseline", "the new baseline")
    await until(lambda: store.get_run(run_id)["best_score"] < 3, "a climb from the edit")
    host.stop_all()
    await task
    rows = store.experiments(run_id)
    new = noted()[0]
    assert [r["kind"] for r in rows].count("baseline") == 2 and rows[0]["kind"] == "baseline"
    assert new["parent"] is None and new["score"] == 3  # scored as it was written
    assert store.version_files(new["id"]) == {rel: edited}
    after = [r for r in rows if r["id"] > new["id"] and r["kind"] == "candidate"]
    assert after and after[0]["parent"] == new["id"]  # the run climbs from the person's text
    assert not [r for r in rows if r["id"] < new["id"] and r["verdict"] == "kept"]
    # On the run's branch as a commit of its own, the hand's text in it.
    sha = new["git_commit"]
    assert git(ws, "show", f"{sha}:{rel}") == edited
    assert git(ws, "log", "-1", "--format=%s", sha).strip() == "autoresearch skill-a: baseline"
    assert "# the tone is warmer now" in (ws / rel).read_text()  # never reverted
    assert any("edited by hand" in e["line"] for e in store.events(run_id, limit=500))
    # The other runs took no new baseline.
    for other in ("skill-b", "skill-c"):
        kinds = [r["kind"] for r in store.experiments(store.get_run(other)["id"])]
        assert kinds.count("baseline") == 1


async def test_a_plateau_rests_and_an_edit_of_its_file_wakes_it(tmp_path: Path):
    spec = make(tmp_path, "{rest_after: 2, rest_minutes: 60}", stop="max_rounds: 200")
    ws = spec.parent
    rel = "skills/a/SKILL.md"
    (ws / rel).write_text("x: 1\ngoal: 1\n")  # nothing to gain: a plateau at once
    store, host = host_of(tmp_path / "a.db", spec)
    task = asyncio.create_task(host.run_until_done())
    run_id = store.get_run("skill-a")["id"]
    deadline = time.monotonic() + 30
    while not (store.get_run(run_id)["waiting"] or "").startswith("resting: plateau since"):
        assert time.monotonic() < deadline, store.get_run(run_id)["waiting"]
        await asyncio.sleep(0.05)
    rounds = store.get_run(run_id)["rounds"]
    printed = io.StringIO()
    cmd_status(store.path, False, out=printed)
    assert "(resting: plateau since " in printed.getvalue()
    await asyncio.sleep(1.5)
    assert store.get_run(run_id)["rounds"] == rounds  # resting: no round, no money
    (ws / rel).write_text("x: 6\ngoal: 1\n")  # a person's edit wakes it at once
    while not [r for r in store.experiments(run_id) if r["description"] == NOTE
               and r["verdict"] == "baseline"]:
        assert time.monotonic() < deadline, "woken by the edit"
        await asyncio.sleep(0.05)
    host.stop_all()
    await task
    assert store.get_run(run_id)["rounds"] > rounds
