"""Shared test helpers: the repository root, running the real CLI in a subprocess, and
small spec/workspace builders. No mocks of our own engine: real files, git, SQLite, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# Property tests draw the same examples on every run, so CI's verdict depends on the code,
# not on luck; `HYPOTHESIS_PROFILE=explore python -m pytest` draws fresh ones to hunt for
# new failures (make each one found a plain regression test).
settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# Evaluations that run pytest (the tests evaluator's cases) start it without this suite's
# third-party plugins (Textual snapshots, Hypothesis...): 0.6 s of CPU a start instead of
# 3.7. Read by pytest at start-up only, so this session's own plugins are untouched.
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"

def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    env.pop("ANTHROPIC_API_KEY", None) if "ANTHROPIC_API_KEY" not in extra else None
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `autoresearch-tui ARGS` from this checkout, as a user would."""
    return subprocess.run([sys.executable, "-m", "tui", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=env or cli_env())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def params_workspace(tmp_path: Path) -> Path:
    """A workspace whose score is a deterministic function of two parameters (best: x=7, y=b)."""
    ws = tmp_path / "ws"
    write(ws / "params.yaml", """
        x: 1      # the number to tune
        y: a
    """)
    write(ws / "score.py", """
        import yaml
        p = yaml.safe_load(open("params.yaml"))
        print(f"METRIC loss={abs(p['x'] - 7) + (0 if p['y'] == 'b' else 3)}")
    """)
    return ws


def metric_spec(ws: Path, name: str = "toy", extra: str = "", **fields: str) -> Path:
    """A params × metric spec over `params_workspace`; `stop` is the inside of a YAML flow
    mapping, e.g. "max_rounds: 5, plateau: 3"."""
    stop = fields.get("stop", "max_rounds: 30")
    spec = ws.parent / f"{name}.yaml"
    write(spec, textwrap.dedent(f"""
        name: {name}
        target:
          workspace: {ws.name}
          files: [params.yaml]
          protected: [score.py]
        mutator:
          kind: params
          file: params.yaml
          seed: 3
          params:
            x: {{type: int, min: 0, max: 20}}
            y: {{type: choice, values: [a, b, c]}}
        evaluate:
          kind: metric
          command: {fields.get("command", "python score.py")}
          metric: loss
          direction: minimize
          timeout_s: {fields.get("timeout", "20")}
        stop: {{{stop}}}
    """) + extra)
    return spec


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The test key exported, as a user would (for `check`, and runs with their own server)."""
    from fake_anthropic import TEST_KEY

    monkeypatch.setenv("ANTHROPIC_API_KEY", TEST_KEY)
    return TEST_KEY


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, api_key: str):
    """A local Messages API server (tests/fake_anthropic.py) the real SDK is pointed at, in
    this process (the environment) and in subprocesses (`cli_env(**api.env())`). Give it
    replies with `api.script(...)` or a `api.responder`; `api.cache = True` reports usage
    under the real API's cache rules."""
    from fake_anthropic import FakeAnthropic

    with FakeAnthropic() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server
