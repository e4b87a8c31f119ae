"""Secrets never reach the store: values of secret-looking environment variables (API keys,
tokens, passwords) are replaced wherever text is written — log tails, events, evidence,
diffs — whatever printed them (an evaluation running `env`, a model repeating a key).

The values are the engine's own environment's, plus those a spec passes to its workers:
an `env:` entry whose name looks secret or that the worker lists in `secret:`, and every
variable it passes through from the engine's environment with `env_from:` (so the value
never enters the spec file at all). The stored spec shows such values masked. Private key
blocks (`-----BEGIN ... PRIVATE KEY-----`) are masked in any text, whoever printed them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH", re.IGNORECASE)
#: Shorter values are too likely to be ordinary words or numbers to replace.
MIN_SECRET_LEN = 12
#: Values a spec marked secret are masked from this length (a short password is still one).
MIN_MARKED_LEN = 4
MASK = "[redacted]"
#: A private key block, whole or cut off by a log tail at either end.
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY"
    r"( BLOCK)?-----|\Z)"
    r"|(?:^[A-Za-z0-9+/=]{16,}\r?\n)+-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----",
    re.DOTALL | re.MULTILINE)
KEY_MASK = "-----BEGIN PRIVATE KEY----- [redacted] -----END PRIVATE KEY-----"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def mask_private_keys(text: str) -> str:
    return PRIVATE_KEY.sub(KEY_MASK, text) if "PRIVATE KEY" in text else text


def make_redactor(environ: dict[str, str] | None = None,
                  extra: Iterable[str] = ()) -> Callable[[str | None], str | None]:
    """A function that masks this environment's secret values, the `extra` ones (a spec's)
    and private key blocks in a text (None passes)."""
    values = sorted(set(secret_values(environ)) | {v for v in extra if len(v) >= MIN_MARKED_LEN},
                    key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def redact(text: str | None) -> str | None:
        if not text:
            return text
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return mask_private_keys(text)

    return redact


# ------------------------------------------------------------ a spec's worker environment

def _secret_names(env_block: dict[str, Any]) -> set[str]:
    marked = set(env_block.get("secret") or [])
    names = {k for k in env_block.get("env") or {} if SECRET_NAME.search(k) or k in marked}
    return names | set(env_block.get("env_from") or [])


def _env_blocks(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every part of a spec (as a dict) that passes environment: workers and the screen."""
    blocks = [w for w in data.get("workers") or [] if isinstance(w, dict)]
    if isinstance(data.get("screen"), dict):
        blocks.append(data["screen"])
    return blocks


def spec_secrets(spec: Any) -> list[str]:
    """The secret values a spec passes to its workers' commands (for the store's redactor)."""
    data = spec.model_dump()
    values = []
    for block in _env_blocks(data):
        names = _secret_names(block)
        env = block.get("env") or {}
        values += [str(env[k]) for k in names if k in env]
        values += [os.environ[k] for k in block.get("env_from") or [] if k in os.environ]
    return [v for v in values if v]


def redacted_spec_json(spec: Any) -> str:
    """The spec as stored (runs.spec_json): secret environment values masked."""
    data = spec.model_dump(mode="json")
    for block in _env_blocks(data):
        env = block.get("env") or {}
        for name in _secret_names(block) & set(env):
            env[name] = MASK
    return json.dumps(data)


def missing_env_from(spec: Any) -> list[str]:
    """`env_from` names the engine's environment does not have (an error before the run)."""
    data = spec.model_dump()
    return sorted({k for b in _env_blocks(data) for k in b.get("env_from") or []
                   if k not in os.environ})


class KeyBlockLines:
    """Masks a private key block printed over many lines that are stored one by one (event
    lines): from its BEGIN line to its END line, per stream (run, experiment, source)."""

    def __init__(self) -> None:
        self.inside: set[object] = set()

    def __call__(self, stream: object, line: str) -> str:
        if "PRIVATE KEY" in line and "-----BEGIN" in line and "-----END" not in line:
            self.inside.add(stream)
            return KEY_MASK
        if stream in self.inside:
            if "-----END" in line:
                self.inside.discard(stream)
            return MASK
        return line


# ---------------------------------------------------------------- secrets written into edits
#
# Redaction masks secrets in text the engine stores; a mutation is different: its content is
# written to the target files, the version store and a git commit, where a mask would corrupt
# the artifact. So an edit that would write a known secret is refused instead (the llm and
# agent mutators record it as `invalid`).

#: Lines of a private key shorter than this are headers or padding, not key material.
KEY_LINE_MIN = 40
_key_lines: dict[tuple[str, float], list[str]] = {}


def identity_files(extra: list[str] = ()) -> list[Path]:
    """SSH private keys whose contents must never be written: ~/.ssh/id_* (not .pub), and
    the identities a spec's workers name."""
    found = [p for p in (Path.home() / ".ssh").glob("id_*") if not p.name.endswith(".pub")]
    found += [Path(os.path.expanduser(x)) for x in extra if x]
    return [p for p in found if p.is_file()]


def _private_lines(path: Path) -> list[str]:
    try:
        stamp = (str(path), path.stat().st_mtime)
    except OSError:
        return []
    if stamp not in _key_lines:
        try:
            text = path.read_text(encoding="ascii", errors="ignore")
        except OSError:
            text = ""
        _key_lines[stamp] = [line.strip() for line in text.splitlines()
                             if len(line.strip()) >= KEY_LINE_MIN and "PRIVATE KEY" not in line]
    return _key_lines[stamp]


def secrets_written(files: dict[str, str], before: dict[str, str],
                    identities: list[str] = (),
                    environ: dict[str, str] | None = None) -> str | None:
    """What known secret the new file contents would write that the old ones did not hold:
    the API key in use, a secret-looking environment variable's value, or a line of an SSH
    private key. None when there is none. The answer names the secret, never its value."""
    env = os.environ if environ is None else environ
    named = [(k, v.strip()) for k, v in env.items()
             if SECRET_NAME.search(k) and len(v.strip()) >= MIN_SECRET_LEN]
    keys = [(f"an SSH private key ({path})", line) for path in identity_files(identities)
            for line in _private_lines(path)]
    for path, text in files.items():
        old = before.get(path, "")
        for name, value in named:
            if value in text and value not in old:
                what = "the API key in use" if name == "ANTHROPIC_API_KEY" else f"the value of ${name}"
                return f"{what} into {path}"
        for what, line in keys:
            if line in text and line not in old:
                return f"{what} into {path}"
    return None
