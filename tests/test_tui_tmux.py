"""The real thing, as over SSH: `autoresearch-tui demo` inside tmux, driven with send-keys and
read back with capture-pane, under both 256-colour TERMs people have there."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.store import Store
from tests.conftest import REPO


class Tmux:
    """One tmux server on its own socket (never the user's), one session."""

    def __init__(self, socket: Path, session: str = "ar") -> None:
        self.socket = socket
        self.session = session

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True,
                              text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.session, *keys)

    def wait_for(self, test: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.screen()
            if test(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"tmux: no {what} within {timeout:g} s; the screen:\n{self.screen()}")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    assert shutil.which("tmux"), "tmux is needed (apt-get install tmux)"
    mux = Tmux(tmp_path / "tmux.sock")
    yield mux
    subprocess.run(["tmux", "-S", str(mux.socket), "kill-server"], capture_output=True,
                   timeout=20)


@pytest.mark.parametrize(("term", "size"), [("xterm-256color", (80, 24)),
                                            ("screen-256color", (160, 48))])
def test_the_demo_runs_in_tmux_and_quits_cleanly(tmp_path: Path, tmux: Tmux, term: str,
                                                 size: tuple[int, int]) -> None:
    db = tmp_path / "demo.db"
    command = (f"cd {shlex.quote(str(tmp_path))} && env TERM={term} PYTHONPATH="
               f"{shlex.quote(str(REPO))} {shlex.quote(sys.executable)} -m tui demo --db "
               f"{shlex.quote(str(db))} --workdir {shlex.quote(str(tmp_path / 'work'))}; "
               "echo EXITED $?; sleep 60")
    width, height = size
    tmux("new-session", "-d", "-s", tmux.session, "-x", str(width), "-y", str(height), command)
    tmux.wait_for(lambda s: "demo-classifier" in s and "running" in s, 60, "demo running")
    tmux.wait_for(lambda s: "Pause" in s and "Quit" in s, 5, "footer keys")
    if width < 110:  # collapsed: one pane at a time
        tmux.keys("1")
        tmux.wait_for(lambda s: "demo-sqlite-load" in s, 10, "the runs pane")
        tmux.keys("2")
    else:
        text = tmux.screen()
        assert all(t in text for t in ("Runs", "Score", "Checklist", "Changelog", "Workers"))
    tmux.keys("?")
    tmux.wait_for(lambda s: "Keys" in s and "guidance" in s, 10, "the help")
    tmux.keys("Escape")
    tmux.wait_for(lambda s: "Keys" not in s, 10, "the help to close")
    tmux.keys("p")
    tmux.wait_for(lambda s: "applied: paused" in s, 10, "the pause applied")
    tmux.keys("q")
    text = tmux.wait_for(lambda s: "EXITED" in s, 30, "the app to exit")
    assert "EXITED 0" in text
    assert "Traceback" not in text
    store = Store(db)
    runs = {r["name"]: r for r in store.runs()}
    assert runs["demo-classifier"]["status"] in ("stopped", "done")
    assert store.running_experiments() == []
    assert any(c["verb"] == "pause" and c["result"] == "paused" for c in store.commands())


def test_one_whole_session_as_a_person_drives_it(tmp_path: Path, tmux: Tmux) -> None:
    """demo → `/` filter typed and visible → `3` chart → resize → `p` → `g` → `enter` →
    `esc` → `q`, reading the screen at each step (issue 12)."""
    db = tmp_path / "demo.db"
    # COLUMNS and LINES exported, as some shells and tools do: the app must still follow
    # the terminal's real size when it is resized.
    command = (f"cd {shlex.quote(str(tmp_path))} && env TERM=xterm-256color COLUMNS=80 "
               f"LINES=24 PYTHONPATH={shlex.quote(str(REPO))} {shlex.quote(sys.executable)} "
               f"-m tui demo --db {shlex.quote(str(db))} --workdir "
               f"{shlex.quote(str(tmp_path / 'work'))}; echo EXITED $?; sleep 60")
    tmux("new-session", "-d", "-s", tmux.session, "-x", "80", "-y", "24", command)
    tmux("set-option", "-t", tmux.session, "window-size", "manual")  # resizes stick
    tmux.wait_for(lambda s: "demo-classifier" in s and "running" in s, 40, "demo running")

    def intact(screen: str) -> str:
        assert "Traceback" not in screen and "could not draw" not in screen, screen
        return screen

    tmux.keys("/")
    tmux.keys("-l", "base")  # typed, not yet entered: the box shows it
    intact(tmux.wait_for(lambda s: any(line.strip() == "base" for line in s.splitlines()), 10,
                         "the typed filter"))
    tmux.keys("Enter")  # the filter stays; the table has the keys again
    time.sleep(0.5)  # a person reads the filtered changelog (keys sent at once would be typed)
    tmux.keys("3")
    intact(tmux.wait_for(lambda s: "better" in s and "┤" in s, 15, "the score chart"))
    tmux("resize-window", "-t", tmux.session, "-x", "160", "-y", "48")
    intact(tmux.wait_for(lambda s: all(f"─ {t} " in s for t in ("Runs", "Changelog", "Workers"))
                         and "┤" in s, 15, "every pane at 160×48"))
    tmux("resize-window", "-t", tmux.session, "-x", "100", "-y", "30")
    intact(tmux.wait_for(lambda s: "┤" in s and "3 Score" in s, 15, "the chart at 100×30"))
    tmux("resize-window", "-t", tmux.session, "-x", "160", "-y", "48")
    tmux.wait_for(lambda s: "─ Workers " in s, 15, "back at 160×48")
    tmux.keys("p")
    intact(tmux.wait_for(lambda s: "applied: paused" in s, 10, "the pause applied"))
    tmux.keys("g")
    intact(tmux.wait_for(lambda s: "Guidance for the mutator" in s, 10, "the guidance dialog"))
    tmux.keys("-l", "try smaller nets")
    tmux.keys("Enter")
    intact(tmux.wait_for(lambda s: "Guidance for the mutator" not in s
                         and "guide → applied" in s, 10, "what guidance does"))
    tmux.keys("2", "Enter")  # the changelog, then the selected experiment
    intact(tmux.wait_for(lambda s: "Diff [1]" in s and "Evidence [2]" in s, 10,
                         "the experiment screen"))
    tmux.keys("Escape")
    intact(tmux.wait_for(lambda s: "Diff [1]" not in s and "Changelog" in s, 10,
                         "the dashboard again"))
    tmux.keys("q")
    text = tmux.wait_for(lambda s: "EXITED" in s, 30, "the app to exit")
    assert "EXITED 0" in text and "Traceback" not in text
