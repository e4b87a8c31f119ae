"""A library run's file edited by hand while the host runs becomes the run's new baseline.

The file on disk only ever holds the run's best version (invariant 1), so between two
rounds it differs from the best only when someone else wrote it: a person improving the
skill, a `git pull`. Their text is not a mutation of the run's and is never reverted: the
run takes it as a new starting point, scored and recorded as a baseline row whose
description says so ("baseline: edited by hand"), committed on the run's branch, and climbs
from there. Looked at before each of the run's rounds (engine/scheduler.py), by the file's
size and time first, so an unchanged file costs one stat.
"""

from __future__ import annotations

import os
from typing import Any

#: The description of a baseline a hand edit made (engine/loop.py records it).
NOTE = "baseline: edited by hand"


class HandEdits:
    """Tells, before a round, whether a run's file changed under it."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int]] = {}

    def check(self, loop: Any) -> bool:
        """True (and the run set to take a new baseline) when the file on disk is not the
        run's best version any more."""
        best = loop.versions.best
        if best is None:  # a baseline is coming anyway (with the note, if an edit asked)
            return False
        if loop.ctx.baseline_note:  # the baseline the last edit asked for is recorded
            loop.ctx.baseline_note = ""
        rel = loop.spec.target.files[0]
        path = f"{loop.workspace.root}/{rel}"
        try:
            st = os.stat(path)
        except OSError:
            return False
        mark = (st.st_size, st.st_mtime_ns)
        if self.seen.get(loop.run_id) == mark:
            return False
        self.seen[loop.run_id] = mark
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError):
            return False
        if text == best.files.get(rel, text):
            return False
        loop.log(f"{rel} was edited by hand: it is the run's new baseline "
                 f"(was experiment {best.exp_id})")
        loop.ctx.baseline_note = NOTE
        loop.versions.reset()
        return True
