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
