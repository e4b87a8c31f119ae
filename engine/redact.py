"""Secrets never reach the store: values of secret-looking environment variables (API keys,
tokens, passwords) are replaced wherever text is written — log tails, events, evidence,
diffs — whatever printed them (an evaluation running `env`, a model repeating a key)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
#: Shorter values are too likely to be ordinary words or numbers to replace.
MIN_SECRET_LEN = 12
MASK = "[redacted]"


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_NAME.search(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def make_redactor(environ: dict[str, str] | None = None) -> Callable[[str | None], str | None]:
    """A function that masks this environment's secret values in a text (None passes)."""
    values = secret_values(environ)
    if not values:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(v) for v in values))

    def redact(text: str | None) -> str | None:
        return pattern.sub(MASK, text) if text else text

    return redact


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
