"""Worker `env` values expand on the remote as a shell user expects (`~`, `$VAR`, `${VAR}`)
and nothing else does; against the real sshd, through both ways jobs reach a host."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import spec as specs
from engine.workers.remote import shell_value
from engine.workers.ssh import SSHWorker
from tests.sshd import SSHLab, open_lab


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    yield from open_lab(tmp_path, monkeypatch)


@pytest.fixture(params=["agent", "channels"])
def jobs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "channels":
        monkeypatch.setattr("engine.workers.agent.PYTHON", "no-such-python3")
    return request.param


def test_only_tilde_and_variables_are_left_for_the_shell():
    assert shell_value("~/data") == '"$HOME"/data'
    assert shell_value("x:~/bin:~") == 'x:"$HOME"/bin:"$HOME"'
    assert shell_value("${A}b$C") == '"${A}"b"$C"'
    assert shell_value("a~b") == "'a~b'" and shell_value("~user/x") == "'~user/x'"
    assert shell_value("$(id) `id` *; $1") == "'$(id) `id` *; $1'"
    assert shell_value("") == "''"


async def test_env_values_expand_on_the_remote_like_a_shell(lab: SSHLab, tmp_path: Path,
                                                            jobs: str) -> None:
    lab.host("box")
    env = {"FIRST": "one", "DATA": "~/data", "BOTH": "${FIRST}:$FIRST/x",
           "PATHS": "~/bin:$HOME/lib", "LITERAL": "a  b $(echo sub) `echo tick` * ~x"}
    config = specs.SSHWorker.model_validate(lab.worker("box", env=env))
    worker = SSHWorker(config, 1)
    folder = tmp_path / "cand"
    folder.mkdir()
    (folder / "f.txt").write_text("x")
    lines: list[str] = []
    try:
        async with worker.open(folder) as session:
            result = await session.run(
                'echo "$HOME"; echo "$DATA"; echo "$BOTH"; echo "$PATHS"; echo "$LITERAL"',
                timeout=20, on_line=lines.append)
    finally:
        await worker.close()
    assert result.exit_code == 0, result.output
    home = lines[0]
    assert home.startswith("/")
    assert lines[1:] == [f"{home}/data", "one:one/x", f"{home}/bin:{home}/lib",
                         "a  b $(echo sub) `echo tick` * ~x"]
