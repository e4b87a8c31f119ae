"""The library playbook: what helped in some runs of a library reaches the others' prompts,
starts the runs that join later, and wakes the runs resting on a plateau — against the real
SDK and the local Messages-API stand-in, real subprocesses, git-less workspaces, SQLite."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic, drive, user_text
from library_standin import (
    CHANGES,
    SkillModel,
    library_spec,
    proposal,
    target_file,
    write_skill,
)

from engine import libplaybook, library
from engine.host import Host
from engine.locks import sidecar_dir
from engine.spec import load_spec
from engine.store import Store

HELPFUL = [d for d, _, check in CHANGES if check]


@pytest.fixture(autouse=True)
def _at_once(monkeypatch):
    monkeypatch.setattr(libplaybook, "REFRESH_S", 0.0)


def rounds_to_target(store: Store, name: str) -> int:
    run = store.get_run(name)
    hit = [e["round"] for e in store.experiments(run["id"])
           if e["verdict"] == "kept" and (e["score"] or 0) >= 1.0]
    assert hit, f"{name} never reached its target"
    return hit[0]


async def host_library(db: Path, spec: Path) -> Store:
    store = Store(db)
    host = Host(store)
    for one in library.expand_all([load_spec(spec)]):
        host.add(one)
    await drive(host, 60)
    return store


async def test_runs_that_join_later_start_from_the_library_playbook(api: FakeAnthropic,
                                                                   tmp_path: Path):
    model = api.responder = SkillModel()
    ws = tmp_path / "ws"
    for name in ("first", "second"):
        write_skill(ws, name)
    spec = library_spec(ws, stop="target: 1.0, streak: 1, max_rounds: 40")
    store = await host_library(tmp_path / "a.db", spec)
    early = [rounds_to_target(store, n) for n in ("lib-first", "lib-second")]
    book = sidecar_dir(store.path) / "library-lib.playbook.md"  # for people to read
    assert book.is_file() and "## What helped" in book.read_text()
    assert all(f"- {d} — kept in " in book.read_text() for d in HELPFUL)
    store.close()
    # Two skills added later: their runs start from what the first two learned.
    for name in ("third", "fourth"):
        write_skill(ws, name)
    asked = len(api.requests)
    store = await host_library(tmp_path / "a.db", spec)
    later = [rounds_to_target(store, n) for n in ("lib-third", "lib-fourth")]
    first_prompt = api.bodies[asked]
    stable = first_prompt["system"][0]["text"]
    assert '<playbook name="library lib">' in stable  # the cached, stable part
    assert first_prompt["system"][0].get("cache_control")
    assert later == [len(HELPFUL)] * 2, later  # straight to the four fixes
    assert max(later) < min(early), (early, later)
    assert model.with_playbook >= 8


def _resting(db: Path, name: str) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        row = con.execute("SELECT waiting FROM runs WHERE name = ?", [name]).fetchone()
    return bool(row and row[0] and row[0].startswith("resting"))


async def test_a_new_lesson_wakes_the_runs_resting_on_a_plateau(api: FakeAnthropic,
                                                                tmp_path: Path):
    """`stuck` never finds a fix by itself and rests after four misses (the baseline and three
    changes) for an hour; `lucky` finds one once `stuck` rests. The playbook learns it, and
    `stuck` is tried again at once, with the fix in its prompt."""
    db = tmp_path / "a.db"
    model = SkillModel()
    useless = [d for d, _, check in CHANGES if not check]

    def responder(body):
        path = target_file(body)
        tried = sum(d in user_text(body) for d, _, _ in CHANGES)
        if path.startswith("skills/lucky/") and tried == 2:
            deadline = time.monotonic() + 30  # its third try, once `stuck` is resting
            while not _resting(db, "lib-stuck") and time.monotonic() < deadline:
                time.sleep(0.05)
            return proposal(path, "Add a worked example")
        if path.startswith("skills/stuck/") and "<playbook" in body["system"][0]["text"]:
            return model(body)  # it reads the lesson
        return proposal(path, useless[tried % len(useless)])  # no fix of its own

    api.responder = responder
    ws = tmp_path / "ws"
    for name in ("lucky", "stuck"):
        write_skill(ws, name)
    spec = library_spec(ws, stop="max_rounds: 6",
                        library="library: {rest_after: 4, rest_minutes: 60}")
    started = time.monotonic()
    store = await host_library(db, spec)
    assert time.monotonic() - started < 50  # not an hour's rest
    stuck = [e for e in store.experiments(store.get_run("lib-stuck")["id"])
             if e["kind"] == "candidate"]
    verdicts = [e["verdict"] for e in stuck]
    assert verdicts[:3] == ["reverted"] * 3, verdicts
    assert "kept" in verdicts[3:], verdicts  # woken, and the lesson helped
    assert stuck[verdicts.index("kept")]["description"] == "Add a worked example"
    lines = [e["line"] for e in store.events(run_id=store.get_run("lib-stuck")["id"],
                                             limit=500)]
    assert any("library playbook updated (1 kinds of change helped" in line
               for line in lines), lines


async def test_a_finished_run_closes_its_model_client(api: FakeAnthropic, tmp_path: Path):
    """Left open, each run's HTTP client was closed by the garbage collector on a loop
    already closed (a 'Task exception was never retrieved' each, in a long-lived app)."""
    api.responder = SkillModel()
    ws = tmp_path / "ws"
    write_skill(ws, "only")
    store = Store(tmp_path / "a.db")
    host = Host(store)
    loops = [host.add(one) for one in library.expand_all(
        [load_spec(library_spec(ws, stop="max_rounds: 1"))])]
    await drive(host, 30)
    assert all(loop.mutator.client.client.is_closed() for loop in loops)


def test_the_playbook_bans_what_a_person_vetoed_and_counts_nothing_twice(tmp_path: Path):
    store = Store(tmp_path / "a.db")
    spec = str(tmp_path / "lib.yaml")
    runs = [store.create_run(f"lib-{n}", spec_path=spec, spec_json="{}", workspace="ws",
                             direction="maximize", target=None) for n in "abc"]
    other = store.create_run("elsewhere", spec_path=str(tmp_path / "other.yaml"),
                             spec_json="{}", workspace="ws", direction="maximize", target=None)

    def attempt(run: int, description: str, verdict: str, delta: float = 0.0) -> int:
        exp = store.start_experiment(run, round=1, kind="candidate", parent=None,
                                     description=description)
        if verdict != "running":
            store.finish_experiment(exp, verdict=verdict, score=0.5, delta=delta)
        return exp

    shout = attempt(runs[0], "Add a friendly greeting.", "kept", 0.25)
    attempt(runs[1], "add a friendly  greeting", "kept", 0.5)
    attempt(runs[0], "Thank the reader", "reverted")
    attempt(runs[1], "Thank the reader", "reverted")
    attempt(runs[2], "Thank the reader", "running")  # its verdict is to come
    attempt(other, "Name the author", "kept", 1.0)  # another spec's run: not the library's
    book = libplaybook.LibraryPlaybook(store, "lib", spec)
    assert book.refresh()
    assert "- Add a friendly greeting. — kept in 2 runs (lib-a, lib-b)" in book.text
    assert "- Thank the reader — reverted in 2 runs (lib-a, lib-b), kept in none" in book.text
    assert "Name the author" not in book.text
    assert not book.refresh(force=True)  # nothing new: the same lessons, the same text
    # A person vetoes the greeting in one run: banned for the whole library.
    store.conn.execute("UPDATE experiments SET verdict = 'vetoed' WHERE id = ?", [shout])
    store.commit()
    book.note_veto()
    assert book.refresh()
    helped = book.text.split("## What never helped")[0]
    assert "greeting" not in helped
    assert "- Add a friendly greeting. — banned by a person" in book.text


async def test_two_library_specs_in_one_host_keep_their_own_budgets(api: FakeAnthropic,
                                                                  tmp_path: Path):
    """Specs hosted together (`serve DIR`) are separate libraries: one's `library:` budget
    stops its own runs only, and each has its own playbook."""
    api.responder = SkillModel()
    store = Store(tmp_path / "a.db")
    host = Host(store)
    for folder, skill, library_caps in (("cheap", "a", "library: {max_cost_usd: 0.0001}"),
                                        ("free", "b", "")):
        ws = tmp_path / folder
        write_skill(ws, skill)
        spec = library_spec(ws, stop="max_rounds: 3", library=library_caps)
        for one in library.expand_all([load_spec(spec)]):
            host.add(one)
    await drive(host, 30)
    cheap, free = store.get_run("lib-a"), store.get_run("lib-b")
    assert cheap["stop_reason"].startswith("library budget reached"), cheap["stop_reason"]
    assert free["stop_reason"] == "max rounds (3) reached"
    assert len(host.libraries.by_key) == 2
