"""Playbooks: what a run learned, carried into the next one.

`autoresearch-tui export RUN --format playbook` asks the model to distil the changelog into
a short markdown playbook (what kinds of change helped, what never did, and why). A spec's
`mutator.playbooks` names playbook files or earlier runs; an earlier run is summarised from
the store without a model call (`run_digest`), so a new run starts from what it learned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine import spec as specs
from engine.llm import EPHEMERAL, LLMClient, LLMUnavailable, redact
from engine.model import ADVANCING, BASELINE, KEPT, PINNED, VETOED, UserError
from engine.store import Store

#: Experiments listed in a digest or a distillation prompt (the newest ones).
MAX_ROWS = 400
#: Entries per list in a digest.
DIGEST_ENTRIES = 25

PLAYBOOK_TOOL = {
    "name": "write_playbook",
    "description": "Record the playbook distilled from the changelog.",
    "input_schema": {
        "type": "object",
        "properties": {
            "helped": {"type": "array", "description": "Kinds of change that raised the score.",
                       "items": {"type": "object", "properties": {
                           "change": {"type": "string", "description": "the kind of change"},
                           "why": {"type": "string", "description": "why it helped; cite #ids"}},
                           "required": ["change", "why"]}},
            "never_helped": {"type": "array", "description": "Kinds of change that never helped.",
                             "items": {"type": "object", "properties": {
                                 "change": {"type": "string"}, "why": {"type": "string"}},
                                 "required": ["change", "why"]}},
            "advice": {"type": "array", "items": {"type": "string"},
                       "description": "Short advice for the next run on a similar artifact."},
        },
        "required": ["helped", "never_helped", "advice"],
    },
}

DISTIL_RULES = """\
You distil the changelog of an autoresearch run into a short playbook for future runs on
similar artifacts. In the run, a model proposed one small change per round; the change was
kept only if the score improved, otherwise reverted. Some ideas were vetoed (banned) or pinned
(kept whatever the score) by the person steering it.

Generalise from single edits to kinds of change ("add a concrete number to the headline", not
"changed line 3"). Say what helped, what never helped, and why, citing experiment numbers
(#id) as evidence. Be concrete and brief: at most 8 entries per list, one sentence each.
Answer with the write_playbook tool."""


# ---------------------------------------------------------------- starting from playbooks


def load_playbook_files(names: list[str], spec: specs.Spec) -> tuple[list[tuple[str, str]], list[str]]:
    """Read the names that are files (relative to the spec's folder); return the rest, which
    must be earlier runs' names."""
    base = spec.path.parent if spec.path else Path.cwd()
    found, rest = [], []
    for name in names:
        path = Path(name).expanduser()
        path = path if path.is_absolute() else base / path
        if path.is_file():
            try:
                found.append((name, path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise UserError(f"mutator.playbooks: cannot read {path}: {exc}") from None
        else:
            rest.append(name)
    return found, rest


def load_playbook_runs(store: Store, names: list[str], spec: specs.Spec) -> list[tuple[str, str]]:
    """Digests of earlier runs named in `mutator.playbooks`."""
    out = []
    for name in names:
        run = store.get_run(name)
        if run is None or run["name"] == spec.name:
            base = spec.path.parent if spec.path else Path.cwd()
            raise UserError(f"mutator.playbooks: {name!r} is neither a file (looked in {base}) "
                            f"nor an earlier run in {store.path}")
        out.append((f"run {name}", run_digest(store, run)))
    return out


def read_playbooks(spec: specs.Spec, store: Store) -> list[tuple[str, str]]:
    """The (name, text) playbooks a spec's mutator starts from: files, and digests of the
    earlier runs named (read by the loop, which hands them to the mutator)."""
    names = list(getattr(spec.mutator, "playbooks", None) or [])
    if not names:
        return []
    found, runs = load_playbook_files(names, spec)
    return found + load_playbook_runs(store, runs, spec)


def run_digest(store: Store, run: dict[str, Any]) -> str:
    """What an earlier run learned, from its changelog alone: kept, reverted, banned."""
    rows = store.experiments(run["id"], newest_first=True, limit=MAX_ROWS)
    cands = [r for r in rows if r["kind"] != BASELINE]
    kept = sorted((r for r in cands if r["verdict"] in (KEPT, PINNED)),
                  key=lambda r: -abs(r["delta"] or 0))
    reverted = [r for r in cands if r["verdict"] == "reverted"]
    banned = [r for r in cands if r["verdict"] == VETOED
              and not (r["reason"] or "").startswith("built on vetoed")]
    lines = [f"Run {run['name']}: baseline {_num(run['baseline_score'])} → best "
             f"{_num(run['best_score'])} ({run['direction']}), {len(cands)} attempts."]
    for title, group in (("Helped (kept)", kept), ("Did not help (reverted)", reverted),
                         ("Banned by the person", banned)):
        if group:
            lines.append(f"{title}:")
            lines.extend(f"- {r['description']} ({_num(r['delta'], True)})"
                         for r in group[:DIGEST_ENTRIES])
            if len(group) > DIGEST_ENTRIES:
                lines.append(f"- … and {len(group) - DIGEST_ENTRIES} more")
    return "\n".join(lines)


# ---------------------------------------------------------------- export --format playbook


#: Said once (on stderr, and in the file) when the export is made without a model.
NEEDS_KEY = ("the model's summary (kinds of change, and why) needs ANTHROPIC_API_KEY; this "
             "playbook is the changelog's own account")


def export_playbook(store: Store, run: dict[str, Any]) -> Iterator[str]:
    """The `playbook` export format: one model call, then markdown."""
    yield asyncio.run(distil_playbook(store, run))


def needs_key() -> bool:
    import os

    return not os.environ.get("ANTHROPIC_API_KEY", "").strip()


def changelog_playbook(store: Store, run: dict[str, Any]) -> str:
    """A playbook without a model: what helped and by how much, what never helped, what was
    banned — straight from the changelog (newest MAX_ROWS experiments)."""
    rows = store.experiments(run["id"], newest_first=True, limit=MAX_ROWS)
    cands = [r for r in rows if r["kind"] != BASELINE]
    if not cands:
        raise UserError(f"run {run['name']!r} has no experiments beyond the baseline yet; "
                        "nothing to distil")
    spec = _spec_of(run)
    helped = sorted((r for r in cands if r["verdict"] in (KEPT, PINNED)),
                    key=lambda r: -abs(r["delta"] or 0))
    never = [r for r in cands if r["verdict"] == "reverted"]
    banned = [r for r in cands if r["verdict"] == VETOED
              and not (r["reason"] or "").startswith("built on vetoed")]
    parts = [f"# Playbook: {run['name']}\n"]
    if spec is not None and spec.description:
        parts.append(f"_{spec.description}_\n")
    parts.append(f"Baseline {_num(run['baseline_score'])} → best {_num(run['best_score'])} "
                 f"({run['direction']}) over {len(cands)} experiments · from the changelog, "
                 f"{time.strftime('%Y-%m-%d')}\n")
    parts.append(f"_Note: {NEEDS_KEY}._\n")
    for title, group, how in (
            ("What helped", helped, lambda r: f"{_num(r['delta'], True)}"
             + (" (pinned)" if r["verdict"] == PINNED else "")),
            ("What never helped", never, lambda r: f"{_num(r['delta'], True)}"),
            ("Banned by the person", banned, lambda r: "vetoed")):
        parts.append(f"## {title}\n")
        parts.extend(f"- **{' '.join((r['description'] or 'a change').split())}** — {how(r)} "
                     f"(#{r['id']})" for r in group[:DIGEST_ENTRIES])
        if len(group) > DIGEST_ENTRIES:
            parts.append(f"- … and {len(group) - DIGEST_ENTRIES} more")
        if not group:
            parts.append("- (nothing)")
        parts.append("")
    return redact("\n".join(parts)).rstrip("\n") + "\n"


async def distil_playbook(store: Store, run: dict[str, Any]) -> str:
    spec = _spec_of(run)
    settings = _settings_for(spec)
    rows = list(reversed(store.experiments(run["id"], newest_first=True, limit=MAX_ROWS)))
    if not any(r["kind"] != BASELINE for r in rows):
        raise UserError(f"run {run['name']!r} has no experiments beyond the baseline yet; "
                        "nothing to distil")
    system = DISTIL_RULES
    if spec is not None:
        from engine.mutators.prompt import describe_evaluation

        system += "\n\n" + describe_evaluation(spec)
        if spec.description:
            system += f"\n\nThe run's purpose: {spec.description}"
    client = LLMClient(settings, role="playbook export")
    try:
        reply = await client.create(
            system=[{"type": "text", "text": system, "cache_control": EPHEMERAL}],
            messages=[{"role": "user", "content": _changelog_text(store, run, rows)}],
            tools=[PLAYBOOK_TOOL], tool="write_playbook")
    except LLMUnavailable as exc:
        raise UserError(str(exc)) from None
    finally:
        await client.close()
    data = reply.tool_input("write_playbook")
    if data is None:
        text = reply.text().strip()
        if not text:
            raise UserError("the model returned no playbook (no write_playbook call, no text)")
        body = redact(text)
    else:
        body = _render(data)
    u = reply.usage
    header = (f"# Playbook: {run['name']}\n\n"
              + (f"_{spec.description}_\n\n" if spec is not None and spec.description else "")
              + f"Baseline {_num(run['baseline_score'])} → best {_num(run['best_score'])} "
              f"({run['direction']}) over {len(rows)} experiments · distilled "
              f"{time.strftime('%Y-%m-%d')} by {settings.model}\n\n")
    footer = (f"\n<!-- distilled with {u.tokens_in} input, {u.tokens_out} output, "
              f"{u.tokens_cache_read} cache-read tokens; ${u.cost_usd:.4f} -->\n")
    return header + body + footer


def _render(data: dict[str, Any]) -> str:
    parts = []
    for key, title in (("helped", "What helped"), ("never_helped", "What never helped")):
        entries = data.get(key) if isinstance(data.get(key), list) else []
        parts.append(f"## {title}\n")
        for e in entries:
            if isinstance(e, dict):
                change, why = str(e.get("change", "")).strip(), str(e.get("why", "")).strip()
                parts.append(f"- **{change}**" + (f" — {why}" if why else ""))
            elif str(e).strip():
                parts.append(f"- {str(e).strip()}")
        if not entries:
            parts.append("- (nothing yet)")
        parts.append("")
    advice = data.get("advice") if isinstance(data.get("advice"), list) else []
    if advice:
        parts.append("## Advice for the next run\n")
        parts.extend(f"- {str(a).strip()}" for a in advice if str(a).strip())
        parts.append("")
    return redact("\n".join(parts))


def _changelog_text(store: Store, run: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [f"Changelog of run {run['name']} (oldest first; verdict, score, delta, change, "
             "reason):"]
    for r in rows:
        mark = " BANNED" if r["verdict"] == VETOED else ""
        lines.append(f"#{r['id']} {r['verdict']}{mark} score {_num(r['score'])} "
                     f"({_num(r['delta'], True)}): {r['description']}"
                     + (f" — {r['reason']}" if r["reason"] and r["verdict"] not in ADVANCING
                        else ""))
    if run["best_experiment"]:
        best = store.version_files(run["best_experiment"])
        if best:
            lines.append("\nThe best version's files:")
            for path, content in best.items():
                lines.append(f'<file path="{path}">\n{content[:6000]}</file>')
    return "\n".join(lines)


def _spec_of(run: dict[str, Any]) -> specs.Spec | None:
    try:
        return specs.Spec.model_validate_json(run["spec_json"] or "")
    except ValueError:
        return None


def _settings_for(spec: specs.Spec | None) -> specs.LLMSettings:
    """The model that distils: the run's mutator's, else its judge's or producer's."""
    if spec is not None:
        from engine.llm import llm_roles

        roles = llm_roles(spec)
        for role in ("mutator", "judge", "produce"):
            if role in roles:
                data = roles[role].model_dump(include=set(specs.LLMSettings.model_fields))
                return specs.LLMSettings(**data)
    return specs.LLMSettings()


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"
