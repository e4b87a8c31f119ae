"""Labelling (engine/labelling.py, tui/label_screen.py): the queue puts the judge's
inconsistent answers first and covers every judged item both ways, the labelling screen writes
one label a key (with a note, the output and its hash) and resumes where it stopped, and the
Evidence tab labels the selected answer. Everything is read back from the labels table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.evaluators.produce import sample_event
from engine.labelling import queue
from engine.labels import output_hash
from engine.model import ItemResult
from engine.store import Store
from tui.app import make_app
from tui.cli import main
from tui.experiment_screen import ExperimentScreen
from tui.fixtures import wait_until
from tui.label_screen import LabelApp, LabelScreen

SPEC = {"name": "judged", "evaluate": {"kind": "checklist", "items": [
    {"name": "clear", "question": "Is it clear?"},
    {"name": "polite", "question": "Is it polite?"},
    {"name": "short", "regex": "^.{0,80}$"}]}}
INPUTS = ("ask for a refund", "say hello")


def output(inp: str, sample: int) -> str:
    return f"Dear customer, about '{inp}' (take {sample}): [bold]we hear you[/bold]."


def build(path: Path) -> tuple[Store, list[int]]:
    """Two versions with the same outputs; the judge answered `clear` on the first input's
    sample 0 yes once and no once (a repeated judgement that disagrees)."""
    store = Store(path)
    run_id = store.create_run("judged", spec_path="s.yaml", spec_json=json.dumps(SPEC),
                              workspace="/w", direction="maximize", target=1.0)
    ids = []
    for n in range(2):
        exp_id = store.start_experiment(run_id, round=n, kind="baseline" if n == 0 else
                                        "candidate", parent=ids[-1] if ids else None)
        items = []
        for inp in INPUTS:
            for sample in range(2):
                store.add_event(run_id, sample_event(inp, sample, output(inp, sample)),
                                experiment_id=exp_id)
                contested = inp == INPUTS[0] and sample == 0
                items += [ItemResult("clear", (n == 0) if contested else True, inp, sample,
                                     "quote: we hear you"),
                          ItemResult("polite", sample == 1, inp, sample, "Dear customer"),
                          ItemResult("short", True, inp, sample, "matched")]
        store.finish_experiment(exp_id, verdict="baseline" if n == 0 else "kept", score=0.7,
                                items=items)
        ids.append(exp_id)
    store.update_run(run_id, best_experiment=ids[-1], best_score=0.7, status="done")
    return store, ids


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "labels.db"
    build(path)[0].close()
    return path


def test_the_queue_puts_disagreements_first_and_covers_items_both_ways(db: Path) -> None:
    store = Store(db)
    run = store.get_run("judged")
    samples = queue(store, run)
    assert {s.item for s in samples} == {"clear", "polite"}  # a regex needs no person
    assert len(samples) == 2 * 2 * 2 * 2  # 2 experiments x 2 inputs x 2 samples x 2 items
    first = samples[:2]
    assert all(s.contested and s.item == "clear" and s.input == INPUTS[0] for s in first)
    assert {s.passed for s in first} == {True, False}
    assert not any(s.contested for s in samples[2:])
    # Stratified: the next four are every (item, judge answer) there is, not one item's yeses.
    assert {(s.item, s.passed) for s in samples[2:5]} == {
        ("clear", True), ("polite", True), ("polite", False)}
    assert all(s.output == output(s.input, s.sample) for s in samples)


async def test_label_screen_writes_one_label_a_key_and_resumes(db: Path) -> None:
    store = Store(db)
    app = LabelApp(store, "judged")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_until(pilot, lambda: isinstance(app.screen, LabelScreen)
                                  and app.screen, 5, "the labelling screen")
        first, second, third = screen.samples[:3]
        assert "Is it clear?" in str(screen.query_one("#label-question").render())
        shown = str(screen.query_one("#label-output").render())
        assert "[bold]we hear you[/bold]" in shown  # markup in an output is shown as text
        await pilot.press("y")
        await pilot.press("m", *"the tone is off", "enter")
        await pilot.press("n")
        await pilot.press("s")
        await pilot.pause()
        assert screen.current is screen.samples[3]
        await pilot.press("q")
    labels = {(r["experiment_id"], r["item"], r["input"], r["sample"]): r
              for r in store.labels(store.get_run("judged")["id"])}
    assert set(labels) == {first.key, second.key}  # the skipped one is not labelled
    one, two = labels[first.key], labels[second.key]
    assert one["label"] == 1 and two["label"] == 0 and two["note"] == "the tone is off"
    assert one["output"] == output(first.input, first.sample)
    assert one["output_hash"] == output_hash(one["output"])
    # Resumed: what is labelled is not asked again; the skipped one still is.
    app = LabelApp(store, "judged")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await wait_until(pilot, lambda: isinstance(app.screen, LabelScreen)
                                  and app.screen, 5, "the labelling screen")
        keys = [s.key for s in screen.samples]
        assert first.key not in keys and second.key not in keys and third.key in keys
        assert len(keys) == 16 - 2
        for _ in keys:
            await pilot.press("y")
        await pilot.pause()
        assert screen.current is None
        assert "Nothing left to label" in str(screen.query_one("#label-question").render())
        await pilot.press("y")  # nothing happens: nothing left
    assert len(store.labels(store.get_run("judged")["id"])) == 16


def test_label_command_names_a_missing_run_in_one_line(db: Path, capsys) -> None:
    assert main(["--db", str(db), "label", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no run named 'nope'" in err and "judged" in err and "Traceback" not in err
    assert main(["--db", str(db.parent / "none.db"), "label", "judged"]) == 2


async def test_evidence_tab_y_and_n_label_the_selected_answer(db: Path) -> None:
    app = make_app(db, [], attach=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 5, "a run selected")
        store = app.board.store
        run_id = store.get_run("judged")["id"]
        exp_id = store.get_run("judged")["best_experiment"]
        app.open_experiment(exp_id)
        screen = await wait_until(pilot, lambda: isinstance(app.screen, ExperimentScreen)
                                  and app.screen, 5, "the experiment screen")
        await pilot.press("y")  # the Diff tab: y labels nothing
        await pilot.pause()
        assert store.labels(run_id) == []
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("y", "n")
        await pilot.pause()
        labels = store.labels(run_id)
        rows = screen.answers[:2]
        assert [(r["item"], r["input"], r["sample"], r["label"]) for r in labels] == [
            (rows[0]["item"], rows[0]["input"], rows[0]["sample"], 1),
            (rows[1]["item"], rows[1]["input"], rows[1]["sample"], 0)]
        assert labels[0]["output"] == output(rows[0]["input"], rows[0]["sample"])
        await pilot.press("escape")
        await pilot.press("l")  # the dashboard's key opens the labelling screen
        label = await wait_until(pilot, lambda: isinstance(app.screen, LabelScreen)
                                 and app.screen, 5, "the labelling screen")
        assert len(label.samples) == 16 - 2
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, LabelScreen), 5, "back")
        assert app.is_running


async def test_labels_in_the_app_never_wait_on_the_loop_for_an_engine_holding_the_lock(
        db: Path) -> None:
    """An engine on the app's event loop keeps its transaction open between rounds and
    commits it from that loop: a label written there with SQLite's busy wait froze the app
    (and then failed) — the engine could not commit while the loop waited. Both label keys
    (the Evidence tab, the labelling screen) go through the app's queue of the person's
    writes; they land when the lock is free, in the order pressed."""
    import asyncio
    import time

    app = make_app(db, [], attach=True)
    engine = Store(db)  # as an in-process engine: another connection, this loop
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.selected_run is not None, 5, "a run selected")
        store = app.board.store
        run_id = store.get_run("judged")["id"]
        app.open_experiment(store.get_run("judged")["best_experiment"])
        screen = await wait_until(pilot, lambda: isinstance(app.screen, ExperimentScreen)
                                  and app.screen, 5, "the experiment screen")
        await pilot.press("2")
        await pilot.pause()
        engine.add_event(run_id, "the engine's open transaction", experiment_id=None)
        engine.conn.execute("BEGIN IMMEDIATE")
        engine.conn.execute("UPDATE runs SET rounds = rounds + 1")
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, engine.commit)  # as records.py's timer would
        ticks = [time.monotonic()]

        def tick() -> None:  # the loop's pulse: a key that waited for the lock stops it
            ticks.append(time.monotonic())
            loop.call_later(0.01, tick)

        tick()
        await pilot.press("y", "n")
        await pilot.press("escape", "l")
        label = await wait_until(pilot, lambda: isinstance(app.screen, LabelScreen)
                                 and app.screen, 5, "the labelling screen")
        first = label.current
        await pilot.press("y")
        if ticks[-1] - ticks[0] < 0.45:  # (a slow machine may take longer to get here)
            assert store.labels(run_id) == []  # not yet: the engine holds the lock
        await wait_until(pilot, lambda: len(store.labels(run_id)) == 3, 5, "the labels")
        assert not app.board.unsent
        rows = screen.answers[:2]
        labels = {(r["experiment_id"], r["item"], r["input"], r["sample"]): r["label"]
                  for r in store.labels(run_id)}
        assert labels[(screen.exp_id, rows[0]["item"], rows[0]["input"], rows[0]["sample"])] == 1
        assert labels[(screen.exp_id, rows[1]["item"], rows[1]["input"], rows[1]["sample"])] == 0
        assert labels[first.key] == 1
        assert engine.get_run("judged")["rounds"] == 1  # the engine's commit went through
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
        assert max(gaps) < 2, max(gaps)  # a busy wait stalled it 30 s (a slow CI box: ~0.5)
    engine.close()


def test_commands_print_to_the_stdout_of_the_call_not_of_their_import(db: Path) -> None:
    """A command's `out` defaulted to the sys.stdout of the moment its module was imported:
    imported under one capture (a test's, a redirect), it wrote to that closed stream ever
    after (test_check failed after this file's CLI test imported engine.cli under capsys)."""
    import contextlib
    import io

    from engine import cli
    from engine.labels import cmd_judge_report

    for command in (lambda: cmd_judge_report(db, "judged"), lambda: cli.cmd_status(db, True)):
        with contextlib.redirect_stdout(io.StringIO()) as caught:
            command()
        assert caught.getvalue().strip()


async def test_a_run_of_deterministic_checks_has_nothing_to_label_and_says_why(
        tmp_path: Path) -> None:
    # The demo's items have a question as their wording and a json check that decides them.
    spec = {"name": "checked", "evaluate": {"kind": "checklist", "items": [
        {"name": "accurate", "question": "Is accuracy at least 97%?",
         "json_": {"path": "val_acc", "min": 0.97}},
        {"name": "short", "question": "Is it short?", "regex": "^.{0,80}$"}]}}
    store = Store(tmp_path / "c.db")
    run_id = store.create_run("checked", spec_path="s.yaml", spec_json=json.dumps(spec),
                              workspace="/w", direction="maximize", target=1.0)
    exp_id = store.start_experiment(run_id, round=0, kind="baseline", parent=None)
    store.finish_experiment(exp_id, verdict="baseline", score=0.5, items=[
        ItemResult("accurate", False, "1", 0, "val_acc = 0.91 (wants ≥ 0.97)"),
        ItemResult("short", True, "1", 0, "matched")])
    assert queue(store, store.get_run("checked")) == []
    app = LabelApp(store, "checked")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_until(pilot, lambda: isinstance(app.screen, LabelScreen)
                                  and app.screen, 5, "the labelling screen")
        assert "Nothing to label" in str(screen.query_one("#label-question").render())
        assert "deterministic" in str(screen.query_one("#label-output").render())
