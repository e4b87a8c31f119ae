"""The Store's reads of whole rows: runs, experiments and their item results, versions' files,
labels, events, the evidence behind decisions (re-evaluations, retests) and worker slots.
A mixin of engine/store.py's Store; a UI's light polls are in engine/storeui.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine import retention
from engine.model import ADVANCING, RUNNING
from engine.storerows import StoreRows


class StoreReads(StoreRows):
    """Every read of runs, experiments, versions, labels, events and workers."""

    # ------------------------------------------------------------ runs

    def get_run(self, name_or_id: str | int) -> dict[str, Any] | None:
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            row = self._one("SELECT * FROM runs WHERE id = ?", [int(name_or_id)])
            if row:
                return row
        return self._one("SELECT * FROM runs WHERE name = ?", [str(name_or_id)])

    def runs(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY id")

    def cost_since(self, run_id: int, since: float) -> float:
        """Money the run's experiments that finished after `since` spent."""
        row = self.conn.execute("SELECT SUM(cost_usd) FROM experiments WHERE run_id = ? AND "
                                "finished >= ?", [run_id, since]).fetchone()
        return row[0] or 0.0

    # ------------------------------------------------------------ experiments

    def has_experiment(self, exp_id: int, run_id: int) -> bool:
        return self.conn.execute("SELECT 1 FROM experiments WHERE id = ? AND run_id = ?",
                               [exp_id, run_id]).fetchone() is not None

    def experiment(self, exp_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM experiments WHERE id = ?", [exp_id])

    def experiments(self, run_id: int, *, after_id: int = 0, limit: int | None = None,
                    newest_first: bool = False) -> list[dict[str, Any]]:
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT * FROM experiments WHERE run_id = ? AND id > ? ORDER BY id {order}"
        params: list[Any] = [run_id, after_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._rows(sql, params)

    def changed_since(self, after_id: int, finished_after: float) -> list[dict[str, Any]]:
        """Experiments added after `after_id` or finished after a time: what a UI must redraw."""
        # Sorted here, not in SQL: see light_changes.
        rows = self._rows("SELECT * FROM experiments WHERE id > ? OR finished > ?",
                          [after_id, finished_after])
        return sorted(rows, key=lambda r: r["id"])

    #: Columns a mutator's view of the changelog needs (no logs: they can be megabytes).
    CHANGELOG_COLUMNS = ("id, round, parent, kind, verdict, reason, description, rationale, "
                         "score, delta, metrics_json, worker, tier, cost_usd, git_commit")

    def changelog(self, run_id: int, limit: int, after_id: int = 0) -> list[dict[str, Any]]:
        """The newest `limit` experiments after `after_id`, oldest first, without logs or diffs."""
        return self._rows(
            f"SELECT * FROM (SELECT {self.CHANGELOG_COLUMNS} FROM experiments "
            # held-out scorings never reach a mutator (engine/holdout.py)
            "WHERE run_id = ? AND id > ? AND kind != 'holdout' ORDER BY id DESC LIMIT ?) "
            "ORDER BY id",
            [run_id, after_id, limit])

    def experiments_of_kind(self, run_id: int, kind: str) -> list[dict[str, Any]]:
        """A run's experiments of one kind (e.g. `holdout`), oldest first."""
        return self._rows("SELECT * FROM experiments WHERE run_id = ? AND kind = ? ORDER BY id",
                          [run_id, kind])

    def labels(self, run_id: int) -> list[dict[str, Any]]:
        """A run's labels beside the judge's answer to the same (item, input, sample), oldest
        first (`passed` is None where the experiment has no such answer)."""
        return self._rows(
            "SELECT l.*, r.passed, r.evidence FROM labels l JOIN experiments e "
            "ON e.id = l.experiment_id LEFT JOIN item_results r ON r.experiment_id = "
            "l.experiment_id AND r.item = l.item AND COALESCE(r.input, '') = l.input "
            "AND r.sample = l.sample WHERE e.run_id = ? ORDER BY l.created, l.id", [run_id])

    def judged_answers(self, run_id: int, experiments: int) -> list[dict[str, Any]]:
        """The item answers of a run's newest `experiments` experiments that have any, oldest
        first (engine/labelling.py picks what a person labels from them)."""
        return self._rows(
            "SELECT r.* FROM item_results r WHERE r.experiment_id IN (SELECT DISTINCT "
            "experiment_id FROM item_results i JOIN experiments e ON e.id = i.experiment_id "
            "WHERE e.run_id = ? ORDER BY experiment_id DESC LIMIT ?) ORDER BY r.id",
            [run_id, experiments])

    def recent_verdicts(self, run_id: int, limit: int) -> Iterator[tuple[int, str, str]]:
        """The newest experiments' (id, kind, verdict), newest first (for stop rules, which
        count only the run's own: not an imported history). Read as they are asked for: the
        stop rules, asked every round, stop at the few they need (each row of a library's
        run lies on a page of its own)."""
        yield from self.conn.execute(
            "SELECT id, kind, verdict FROM experiments WHERE run_id = ? "
            "AND kind != 'imported' ORDER BY id DESC LIMIT ?", [run_id, limit])

    def in_flight(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM experiments WHERE run_id = ? AND verdict = ? ORDER BY id",
            [run_id, RUNNING])

    def last_round(self, run_id: int) -> int:
        row = self._one("SELECT MAX(round) AS r FROM experiments WHERE run_id = ?", [run_id])
        return max((row or {}).get("r") or 0, 0)  # imported history has rounds below 0

    def iter_experiments(self, run_id: int) -> Iterator[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM experiments WHERE run_id = ? ORDER BY id",
                                   [run_id])
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def item_results(self, exp_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM item_results WHERE experiment_id = ? ORDER BY id", [exp_id])

    def item_summary(self, exp_id: int) -> list[dict[str, Any]]:
        """Pass rate per item for one experiment, in the checklist's order."""
        return self._rows(
            "SELECT item, SUM(passed = 1) AS passed, COUNT(*) AS total, MIN(id) AS first "
            "FROM item_results WHERE experiment_id = ? GROUP BY item ORDER BY first", [exp_id])

    def version_files(self, exp_id: int) -> dict[str, str]:
        rows = self._rows("SELECT path, content, base FROM versions WHERE experiment_id = ?",
                          [exp_id])  # a reverted one's are deltas (engine/retention.py)
        return {r["path"]: retention.rebuild(self.conn, r["base"], r["path"], r["content"])
                for r in rows}

    def candidate_files(self, run_id: int, path: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` candidates' verdict and content of one file, oldest first
        (what a resumed params mutator tried before)."""
        rows = self._rows(
            "SELECT * FROM (SELECT e.id, e.verdict, e.score, v.content, v.base "
            "FROM experiments e "
            "JOIN versions v ON v.experiment_id = e.id AND v.path = ? "
            "WHERE e.run_id = ? AND e.kind = 'candidate' ORDER BY e.id DESC LIMIT ?) "
            "ORDER BY id", [path, run_id, limit])
        for r in rows:
            r["content"] = retention.rebuild(self.conn, r.pop("base"), path, r["content"])
        return rows

    def advancing_chain(self, run_id: int) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(ADVANCING))
        return self._rows(
            f"SELECT * FROM experiments WHERE run_id = ? AND verdict IN ({marks}) "
            "AND kind != 'imported' ORDER BY id",  # imported rows have no files to go back to
            [run_id, *ADVANCING])

    # ------------------------------------------------------------ events

    def events(self, run_id: int | None = None, *, after_id: int = 0, limit: int = 200,
               experiment_id: int | None = None) -> list[dict[str, Any]]:
        if experiment_id is not None:
            return self._rows(
                "SELECT * FROM (SELECT * FROM events WHERE experiment_id = ? AND id > ? "
                "ORDER BY id DESC LIMIT ?) ORDER BY id", [experiment_id, after_id, limit])
        # One statement per case: `(? IS NULL OR run_id = ?)` would make SQLite scan them all.
        if run_id is None:
            return self._rows("SELECT * FROM (SELECT * FROM events WHERE id > ? ORDER BY id "
                              "DESC LIMIT ?) ORDER BY id", [after_id, limit])
        return self._rows(
            "SELECT * FROM (SELECT * FROM events WHERE run_id = ? AND id > ? "
            "ORDER BY id DESC LIMIT ?) ORDER BY id", [run_id, after_id, limit])

    # ------------------------------------------------------------ summaries

    def run_stats(self, run_id: int) -> dict[str, Any]:
        """Counts per verdict and money spent, for status lines and `status --json`."""
        rows = self._rows(
            "SELECT verdict, COUNT(*) AS n, SUM(cost_usd) AS cost FROM experiments "
            "WHERE run_id = ? GROUP BY verdict", [run_id])
        counts = {r["verdict"]: r["n"] for r in rows}
        return {"verdicts": counts, "experiments": sum(counts.values()),
                "cost_usd": sum(r["cost"] or 0 for r in rows)}

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # ------------------------------------------------------------ decisions (noise-robust)

    def candidates_since(self, run_id: int, after_id: int) -> int:
        """How many candidates finished after an experiment (for re-evaluating the best)."""
        row = self._one("SELECT COUNT(*) AS n FROM experiments WHERE run_id = ? AND id > ? "
                        "AND kind = 'candidate' AND verdict != ?", [run_id, after_id, RUNNING])
        return (row or {}).get("n") or 0

    def last_reeval(self, run_id: int, best_id: int) -> dict[str, Any] | None:
        """The newest re-evaluation of this best version (scored or not)."""
        return self._one("SELECT * FROM experiments WHERE run_id = ? AND kind = 'reeval' AND "
                         "parent = ? ORDER BY id DESC LIMIT 1", [run_id, best_id])

    def pending_retests(self, run_id: int) -> list[dict[str, Any]]:
        """Experiments with verdict `retest` that no finished experiment has re-run yet."""
        return self._rows(
            "SELECT * FROM experiments AS e WHERE run_id = ? AND verdict = 'retest' "
            "AND NOT EXISTS (SELECT 1 FROM experiments AS r WHERE r.run_id = e.run_id "
            "AND r.id > e.id AND r.verdict NOT IN ('running', 'interrupted') "
            "AND json_extract(r.decision_json, '$.retest_of') = e.id) ORDER BY id", [run_id])

    # ------------------------------------------------------------ workers

    def workers(self, run_id: int) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM workers WHERE run_id = ? ORDER BY rowid", [run_id])
