"""Secrets stay secret: a run over SSH with a private key and an API key in the environment
writes neither into the store, its events, exports or the headless output."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.export import FORMATS
from engine.store import Store
from tests.sshd import SSHLab, make_spec, open_lab, run_loop

API_KEY = "sk-ant-api03-SECRET-MARKER-never-store-me-0123456789"


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SSHLab]:
    yield from open_lab(tmp_path, monkeypatch)


def secret_fragments(identity: Path) -> list[str]:
    """Pieces of the private key as they could leak: its PEM body lines and raw key bytes."""
    pem = identity.read_text()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    raw = base64.b64decode("".join(body))
    return [line for line in body if len(line) > 20] + [raw[-32:].hex()]


async def test_ssh_run_writes_no_key_material_anywhere(lab: SSHLab, tmp_path: Path, params_workspace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    lab.host("box")
    # The evaluation itself prints its environment: whatever leaks must not reach the store.
    spec = make_spec(params_workspace, "secret", command=f"env; {sys.executable} score.py",
                     workers=[lab.worker("box", identity=str(lab.keys.identity))],
                     stop={"max_rounds": 3})
    db = tmp_path / "store.db"
    loop = await run_loop(spec, db)
    store = Store(db)
    assert store.get_run(loop.run_id)["rounds"] == 3
    written = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    exported = "".join("".join(FORMATS[f](store, store.get_run(loop.run_id))) for f in FORMATS)
    events = "\n".join(e["line"] for e in store.events(loop.run_id, limit=100_000))
    for fragment in [API_KEY, *secret_fragments(lab.keys.identity)]:
        assert fragment.encode() not in written, fragment
        assert fragment not in exported and fragment not in events, fragment
    # The identity's path may appear in the spec; its contents never do.
    assert b"PRIVATE KEY" not in written


async def test_an_evaluation_printing_its_environment_leaks_no_secret(
        tmp_path: Path, params_workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET_token_value_abcdef")
    spec = make_spec(params_workspace, "envdump", command=f"env; {sys.executable} score.py",
                     workers=[{"kind": "local"}], stop={"max_rounds": 2})
    db = tmp_path / "store.db"
    loop = await run_loop(spec, db)
    store = Store(db)
    tails = " ".join(e["log_tail"] or "" for e in store.experiments(loop.run_id))
    assert "ANTHROPIC_API_KEY=[redacted]" in tails  # the line is kept, the value is not
    written = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    assert API_KEY.encode() not in written
    assert b"hf_SECRET_token_value_abcdef" not in written
