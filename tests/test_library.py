"""A library spec (`target: {each: GLOB}`): one run per matching file, on real files, git,
subprocesses and SQLite."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from engine import library
from engine.host import Host
from engine.spec import SpecError, load_spec
from engine.store import Store
from tests.conftest import write
from tests.library_standin import host_all


def git(ws: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=ws,
                          check=True, capture_output=True, text=True).stdout


SCORE = """
import os, sys, yaml
path = sys.argv[1]
assert path == os.environ["AUTORESEARCH_FILE"], (path, os.environ.get("AUTORESEARCH_FILE"))
p = yaml.safe_load(open(path))
print(f"METRIC loss={abs(p['x'] - p['goal'])}")
"""


def make_library(tmp_path: Path, goals: dict[str, int], stop: str = "max_rounds: 12") -> Path:
    ws = tmp_path / "ws"
    for name, goal in goals.items():
        write(ws / "skills" / name / "SKILL.md", f"x: 1\ngoal: {goal}\n")
    write(ws / "score.py", SCORE)
    return write(ws / "skill.yaml", f"""
        name: skill
        target:
          each: "skills/*/SKILL.md"
          protected: [score.py]
        mutator:
          kind: params
          seed: 5
          params:
            x: {{type: int, min: 0, max: 20}}
        evaluate:
          kind: metric
          command: python score.py {{file}}
          metric: loss
          direction: minimize
          timeout_s: 20
        stop: {{{stop}}}
    """)


def as_checklist(spec_path: Path) -> None:
    spec_path.write_text(spec_path.read_text().split("evaluate:")[0] + """evaluate:
  kind: checklist
  produce: {kind: command, command: "cat {file}"}
  items:
    - {name: has-x, contains: "x:"}
""")


async def test_one_run_per_file_each_with_its_own_best_and_branch(tmp_path: Path):
    spec = make_library(tmp_path, {"landing": 9, "pricing": 3})
    ws = spec.parent
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "start")
    store = await host_all(tmp_path / "a.db", spec)
    names = sorted(r["name"] for r in store.runs())
    assert names == ["skill-landing", "skill-pricing"]
    for name, rel, goal in [("skill-landing", "skills/landing/SKILL.md", 9),
                            ("skill-pricing", "skills/pricing/SKILL.md", 3)]:
        run = store.get_run(name)
        assert run["status"] == "done", run["stop_reason"]
        assert run["best_score"] < run["baseline_score"]
        rows = store.experiments(run["id"])
        assert all(set(store.version_files(r["id"])) == {rel} for r in rows
                   if r["verdict"] in ("kept", "baseline"))  # its file is its only target
        assert all(r["diff"].startswith(f"--- a/{rel}") for r in rows if r["kind"] != "baseline")
        best = store.version_files(run["best_experiment"])[rel]
        assert (ws / rel).read_text() == best  # the file on disk holds its run's best
        assert f"goal: {goal}" in best
        # Its own branch, with one commit per advance, holding its best; never checked out.
        assert git(ws, "show", f"autoresearch/{name}:{rel}") == best
        kept = [r for r in rows if r["verdict"] == "kept"]
        log = git(ws, "log", "--format=%s", f"autoresearch/{name}").splitlines()
        assert log[: len(kept)] == [r["description"] for r in reversed(kept)]
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    # The other run's file is not on this run's branch's changes.
    changed = git(ws, "diff", "--name-only", "main", "autoresearch/skill-landing").split()
    assert changed == ["skills/landing/SKILL.md"]
    # Resume: both pick up where they stopped (their files hold the best, not a user's edit).
    spec.write_text(spec.read_text().replace("max_rounds: 12", "max_rounds: 14"))
    store = await host_all(tmp_path / "a.db", spec)
    for name in names:
        rows = store.experiments(store.get_run(name)["id"])
        assert [r["round"] for r in rows] == list(range(15))


def test_names_overrides_and_substitution(tmp_path: Path):
    spec_path = make_library(tmp_path, {"landing": 9, "a b": 1})
    write(spec_path.parent / "skills" / "landing" / "checklist.yaml", """
        items:
          - {name: short, words: {max: 50}}
          - {name: named, command: "grep -q landing {file}"}
    """)
    spec = load_spec(spec_path)
    runs = {s.name: s for s in library.expand(spec)}
    assert sorted(runs) == ["skill-a-b", "skill-landing"]
    one = runs["skill-landing"]
    assert one.target.files == ["skills/landing/SKILL.md"]
    assert one.mutator.file == "skills/landing/SKILL.md"
    assert one.evaluate.command == "python score.py skills/landing/SKILL.md"
    assert runs["skill-a-b"].evaluate.command == "python score.py 'skills/a b/SKILL.md'"
    assert library.file_env(one) == {"AUTORESEARCH_FILE": "skills/landing/SKILL.md"}
    # A checklist spec: the checklist.yaml beside a file replaces that run's items.
    as_checklist(spec_path)
    spec = load_spec(spec_path)
    runs = {s.name: s for s in library.expand(spec)}
    assert [i.name for i in runs["skill-landing"].evaluate.items] == ["short", "named"]
    assert runs["skill-landing"].evaluate.items[1].command == \
        "grep -q landing skills/landing/SKILL.md"
    assert runs["skill-landing"].evaluate.produce.command == "cat skills/landing/SKILL.md"
    assert [i.name for i in runs["skill-a-b"].evaluate.items] == ["has-x"]


def test_bad_library_specs_are_one_line(tmp_path: Path):
    spec_path = make_library(tmp_path, {"landing": 9})
    good = spec_path.read_text()
    spec_path.write_text(good.replace('each: "skills/*/SKILL.md"', 'each: "../*/SKILL.md"'))
    with pytest.raises(SpecError, match=r"skill.yaml:3: target.each: .* inside"):
        library.expand(load_spec(spec_path))
    spec_path.write_text(good.replace('each: "skills/*/SKILL.md"', 'each: "skills/x.md"'))
    with pytest.raises(SpecError, match=r"skill.yaml:3: target.each: .* not a glob"):
        library.expand(load_spec(spec_path))
    spec_path.write_text(good.replace('  each: "skills/*/SKILL.md"\n', ""))
    with pytest.raises(SpecError, match=r"skill.yaml:\d+: target: .*`files`.*`each`"):
        load_spec(spec_path)
    # A params mutator needs `file:` unless the run's file is the target.
    spec_path.write_text(good.replace('each: "skills/*/SKILL.md"', "files: [skills/landing/SKILL.md]"))
    with pytest.raises(SpecError, match=r"mutator.file: required field is missing"):
        load_spec(spec_path)
    spec_path.write_text(good)
    as_checklist(spec_path)
    write(spec_path.parent / "skills" / "landing" / "checklist.yaml", "items: [{name: a}]\n")
    with pytest.raises(SpecError, match=r"checklist.yaml:1: items"):
        library.expand(load_spec(spec_path))


async def test_a_file_added_while_the_host_runs_joins(tmp_path: Path):
    spec_path = make_library(tmp_path, {"landing": 9}, stop="max_minutes: 0.15")
    spec = load_spec(spec_path)
    store = Store(tmp_path / "a.db")
    host = Host(store)
    for one in library.expand(spec):
        host.add(one)
    watcher = library.LibraryWatcher(host, [spec], poll_s=0.2)
    watching = asyncio.create_task(watcher.run())
    write(spec_path.parent / "skills" / "later" / "SKILL.md", "x: 1\ngoal: 4\n")
    try:
        await asyncio.wait_for(host.run_until_done(), 60)
    finally:
        watching.cancel()
    later = store.get_run("skill-later")
    assert later is not None and later["status"] == "done"
    assert later["best_score"] < later["baseline_score"]


async def test_the_headless_printer_reads_only_the_runs_that_changed(tmp_path: Path):
    """Reading every hosted run's new experiments on every change made a round's engine
    cost grow with the number of runs."""
    import io

    from engine import cli

    spec_path = make_library(tmp_path, {f"s{i}": i for i in range(12)}, stop="max_rounds: 6")
    reads: list[int] = []
    original = Store.experiments

    def counting(self, run_id, *args, **kwargs):
        reads.append(run_id)
        return original(self, run_id, *args, **kwargs)

    Store.experiments = counting  # type: ignore[method-assign]
    try:
        out = io.StringIO()
        assert await cli.run_headless(tmp_path / "a.db", [str(spec_path)], out) == 0
    finally:
        Store.experiments = original  # type: ignore[method-assign]
    store = Store(tmp_path / "a.db", readonly=True)
    rows = sum(len(store.experiments(r["id"])) for r in store.runs())
    assert rows == 12 * 7
    assert out.getvalue().count("] round ") == rows  # every experiment printed once
    # About one read per change of one run, not one per run per change (12 × as many).
    assert len(reads) < 4 * rows, len(reads)


def test_check_names_a_library_spec_runs(tmp_path: Path):
    from tests.conftest import run_cli

    spec_path = make_library(tmp_path, {"landing": 9, "pricing": 3})
    result = run_cli("check", str(spec_path))
    assert result.returncode == 0, result.stderr
    assert "2 runs (skill-landing, skill-pricing)" in result.stdout
    spec_path.write_text(spec_path.read_text().replace("skills/*/SKILL.md", "/etc/*"))
    result = run_cli("check", str(spec_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "skill.yaml:3: target.each:" in result.stderr
