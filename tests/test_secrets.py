"""Secrets stay secret: a run over SSH with a private key and an API key in the environment
writes neither into the store, its events, exports or the headless output."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.export import FORMATS
from engine.host import Host
from engine.model import UserError
from engine.redact import make_redactor
from engine.spec import load_spec
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


WORKER_SECRETS = {"WANDB_API_KEY": "wandb-SECRET-0123456789abcdef",
                  "DB_PASSWORD": "pw-SECRET-42",  # short, but its name says secret
                  "DATABASE_URL": "postgres://u:SECRET-marked@db/x"}  # marked secret by hand
FAKE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE\n" * 4
            + "-----END OPENSSH PRIVATE KEY-----")


async def test_secrets_a_spec_passes_to_workers_never_reach_the_store(
        lab: SSHLab, tmp_path: Path, params_workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET_from_the_engine_env_987654")
    lab.host("box")
    (params_workspace / "key.txt").write_text(f"here is a key:\n{FAKE_KEY}\nend\n")
    worker = lab.worker("box", env={**WORKER_SECRETS, "PLAIN_SETTING": "visible-value"},
                        secret=["DATABASE_URL"], env_from=["HF_TOKEN"])
    spec = make_spec(params_workspace, "workerenv", workers=[worker], stop={"max_rounds": 2},
                     command=f"env; cat key.txt; {sys.executable} score.py")
    db = tmp_path / "store.db"
    loop = await run_loop(spec, db)
    store = Store(db)
    run = store.get_run(loop.run_id)
    assert run["rounds"] == 2
    written = b"".join(p.read_bytes() for p in tmp_path.glob("store.db*"))
    for value in [*WORKER_SECRETS.values(), "hf_SECRET_from_the_engine_env_987654"]:
        assert value.encode() not in written, value
    assert b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAE" not in written
    tails = " ".join(r["log_tail"] or "" for r in store.experiments(loop.run_id))
    assert "HF_TOKEN=[redacted]" in tails  # env_from passed it through, and it is masked
    assert "WANDB_API_KEY=[redacted]" in tails and "DATABASE_URL=[redacted]" in tails
    assert "PLAIN_SETTING=visible-value" in tails  # ordinary settings stay readable
    assert "-----BEGIN PRIVATE KEY----- [redacted]" in tails
    stored = json.loads(run["spec_json"])["workers"][0]
    assert stored["env"]["WANDB_API_KEY"] == "[redacted]"
    assert stored["env"]["PLAIN_SETTING"] == "visible-value"
    assert stored["env_from"] == ["HF_TOKEN"]


def test_env_from_a_variable_the_engine_lacks_is_a_one_line_error(tmp_path, params_workspace):
    spec = make_spec(params_workspace, "nokey", command="true", workers=[
        {"kind": "ssh", "host": "nowhere", "env_from": ["NO_SUCH_VARIABLE_HERE"]}])
    with pytest.raises(UserError, match="env_from: NO_SUCH_VARIABLE_HERE not set") as err:
        Host(Store(tmp_path / "a.db")).add(load_spec(spec))
    assert "\n" not in str(err.value)


def test_private_key_blocks_are_masked_whole_or_cut_off():
    redact = make_redactor({})
    assert "b3BlbnNz" not in redact(f"before\n{FAKE_KEY}\nafter")
    assert redact(f"before\n{FAKE_KEY}\nafter").startswith("before\n-----BEGIN PRIVATE KEY")
    assert "b3BlbnNz" not in redact(FAKE_KEY[:90])  # a tail cut in the middle of the key
    assert "b3BlbnNz" not in redact(FAKE_KEY[40:])  # ... or its start cut off
    assert redact("a public key: ssh-ed25519 AAAAC3Nza") == "a public key: ssh-ed25519 AAAAC3Nza"
