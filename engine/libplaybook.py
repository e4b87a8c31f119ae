"""A library's playbook: what helped across all runs of one `each:` spec, in one shared text
every run's model mutator reads at the top of its prompt (the cached prefix).

The curator (`LibraryPlaybook`) distils the library's changelogs in the store, without a
model call: each kind of change (a change's description, normalised) with the runs that kept
it and its mean gain, and the kinds tried in several runs that no run kept. A run that joins
later starts from it, so a new skill begins from what the library learned.

It is read again after a keep somewhere in the library, at most every REFRESH_S, and its
text changes only when the lessons do (a new kind of change helped, or a kind joined those
that never help), not when a count moves: every change of the text is a new prompt prefix
for every run (a cache write each) and wakes the library's resting runs (engine/scheduler.py)
— what the library learned may be what a plateaued run lacked. The text is also written
beside the store (`.<store>.locks/library-<spec file>.playbook.md`) for people to read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from engine.locks import sidecar_dir
from engine.model import KEPT, PINNED, REVERTED, VETOED
from engine.text import printable

#: Fewest seconds between two readings of the library's changelogs: a model's descriptions
#: rarely repeat, so nearly every reading after a keep is a new text — a new prompt prefix
#: for every run, and the resting runs woken — at most this often.
REFRESH_S = 300.0
#: Entries per list in the playbook.
ENTRIES = 15
#: A kind of change reverted in this many runs, and kept in none, never helps.
NEVER_RUNS = 2
#: Kinds of change that were only reverted, remembered (the newest).
MAX_KINDS = 20_000


def kind_of(description: str) -> str:
    """A change's description as a kind of change: case, spacing and end punctuation go."""
    return re.sub(r"\s+", " ", description or "").strip().rstrip(".!;:").lower()


class LibraryPlaybook:
    """One library's shared playbook, kept up to date from the store."""

    def __init__(self, store: Any, name: str, spec_path: str) -> None:
        self.store = store
        self.name = name
        #: The library's runs are the store's runs of this spec file (each: specs only).
        self.spec_path = spec_path
        self._forget()
        self.text = ""
        #: The lessons the text says (helped kinds, never-helped kinds): a new text only
        #: when these change.
        self.lessons: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        #: How many times the text changed (the scheduler wakes resting runs on a change).
        self.version = 0
        self.dirty = True
        self._read_at = -REFRESH_S

    @property
    def path(self) -> Path:
        return sidecar_dir(self.store.path) / f"library-{self.name}.playbook.md"

    def note_keep(self) -> None:
        """A run of the library kept something: the lessons may have grown."""
        self.dirty = True

    def note_veto(self) -> None:
        """A person vetoed an experiment (maybe one counted as kept): everything is read
        again at the next round, and the kind of change it was is banned for the library."""
        self._forget()
        self.dirty, self._read_at = True, -REFRESH_S

    def _forget(self) -> None:
        self._after = 0  # experiments up to this id are counted
        self._kept: dict[str, dict[str, float]] = {}  # kind → run → its largest gain
        self._reverted: dict[str, set[str]] = {}  # kind → runs
        self._example: dict[str, str] = {}
        self._tried: set[str] = set()
        self._banned: set[str] = set()  # kinds a person vetoed in any run

    def refresh(self, now: float | None = None, force: bool = False) -> bool:
        """Read the library's changelogs again if due; True when the text changed."""
        now = time.monotonic() if now is None else now
        if not force and (not self.dirty or now - self._read_at < REFRESH_S):
            return False
        self.dirty, self._read_at = False, now
        helped, never, tried = self._distil()
        lessons = (frozenset(k for k, *_ in helped), frozenset(k for k, *_ in never))
        if lessons == self.lessons:
            return False
        self.lessons = lessons
        self.text = self._render(helped, never, tried)
        self.version += 1
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(self.text, encoding="utf-8")
        except OSError:
            pass  # the prompt has it; the copy for people is a courtesy
        return True

    def _distil(self) -> tuple[list, list, int]:
        """(kind, example description, runs, mean relative gain) of what helped, best first;
        (kind, example, runs) of what never did; how many runs tried anything. Only the
        experiments settled since the last reading are read (an all-day library has
        hundreds of thousands); reading one again counts nothing twice."""
        rows = self.store.conn.execute(
            "SELECT e.id, e.description, e.verdict, e.delta, r.name, r.baseline_score "
            "FROM runs r JOIN experiments e ON e.run_id = r.id WHERE r.spec_path = ? "
            "AND e.id > ? AND e.kind = 'candidate' AND e.verdict IN (?, ?, ?, ?, 'running') "
            "ORDER BY e.id", [self.spec_path, self._after, KEPT, PINNED, REVERTED, VETOED]
        ).fetchall()
        running = [r[0] for r in rows if r[2] == "running"]
        if rows:  # read again from the oldest still running: its verdict is to come
            self._after = (running[0] - 1) if running else rows[-1][0]
        for _, description, verdict, delta, run, base in rows:
            kind = kind_of(description)
            if verdict == "running" or not kind or kind == "(no description)":
                continue
            self._tried.add(run)
            self._example.setdefault(kind, " ".join(str(description).split()))
            if verdict == VETOED:
                self._banned.add(kind)  # a person's no, for the whole library
            elif verdict == REVERTED:
                self._reverted.setdefault(kind, set()).add(run)
            else:
                gain = abs(delta or 0.0) / (abs(base) if base else 1.0)
                by_run = self._kept.setdefault(kind, {})
                by_run[run] = max(by_run.get(run, 0.0), gain)
        while len(self._reverted) > MAX_KINDS:  # the oldest kinds go first: bounded memory
            self._example.pop(kind := next(iter(self._reverted)), None)
            del self._reverted[kind]
        helped = sorted(((k, self._example[k], sorted(by_run), sum(by_run.values()) / len(by_run))
                         for k, by_run in self._kept.items() if k not in self._banned),
                        key=lambda h: (-len(h[2]), -h[3]))
        never = sorted(((k, self._example[k], sorted(runs)) for k, runs in self._reverted.items()
                        if k not in self._kept and k not in self._banned
                        and len(runs) >= NEVER_RUNS), key=lambda n: -len(n[2]))
        never = [*((k, self._example[k], None) for k in self._banned), *never]
        return helped[:ENTRIES], never[:ENTRIES], len(self._tried)

    def _render(self, helped: list, never: list, tried: int) -> str:
        def runs(names: list[str]) -> str:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                            else "")
            return f"{len(names)} run{'s' if len(names) != 1 else ''} ({shown})"

        lines = [f"# Library playbook: {self.name}", "",
                 f"What helped across the library's runs ({tried} of them tried changes), "
                 "from their changelogs. Kinds of change kept in other runs are the first "
                 "to try on this file.", "", "## What helped", ""]
        lines += [f"- {printable(ex, one_line=True)} — kept in {runs(names)}, mean gain "
                  f"{gain:+.1%}" for _, ex, names, gain in helped] or ["- (nothing yet)"]
        lines += ["", "## What never helped", ""]
        lines += [f"- {printable(ex, one_line=True)} — " + (
            "banned by a person" if names is None else f"reverted in {runs(names)}, kept in none")
            for _, ex, names in never] or ["- (nothing yet)"]
        return "\n".join(lines) + "\n"


def set_playbook(mutator: Any, name: str, text: str) -> bool:
    """Put the library's playbook among the mutator's playbooks (replacing an older text);
    False for a mutator that reads none (the params mutator)."""
    books = getattr(mutator, "playbooks", None)
    if not isinstance(books, list):
        return False
    label = f"library {name}"
    books[:] = [b for b in books if b[0] != label]
    if text:
        books.append((label, text))
    return True
