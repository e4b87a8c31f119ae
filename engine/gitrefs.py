"""Git refs for frontier members: `refs/autoresearch/<run>/v<id>`, one commit each, so any
version the search keeps alive can be checked out (`git checkout refs/autoresearch/RUN/v12`)
while the run's branch holds the best.

A member's commit is built without touching the work tree or the index: its parent
version's commit (or the branch head) with the target files replaced, through a temporary
index file. Refs live outside refs/heads (a branch `autoresearch/RUN` and a branch
`autoresearch/RUN/v12` cannot both exist).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from engine.workspace import GIT_IDENTITY


class VersionRefs:
    """Creates and removes one run's version refs."""

    def __init__(self, root: Path, run_name: str, enabled: bool) -> None:
        self.root = root
        self.prefix = f"refs/autoresearch/{run_name}/v"
        self.enabled = enabled

    def _git(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
             ) -> str:
        done = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=self.root, text=True,
                              capture_output=True, check=True, input=stdin,
                              env={**os.environ, **(env or {})})
        return done.stdout.strip()

    def save(self, exp_id: int, files: dict[str, str], base: str | None, message: str,
             ) -> str | None:
        """A commit of `base` (a commit id, or the branch head) with `files` written, under the
        version's ref; returns the commit id."""
        if not self.enabled:
            return None
        base = base or self._git("rev-parse", "HEAD")
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", base, env=env)
            for path, content in files.items():
                blob = self._git("hash-object", "-w", "--stdin", stdin=content)
                mode = "100755" if os.access(self.root / path, os.X_OK) else "100644"
                self._git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}",
                          env=env)
            tree = self._git("write-tree", env=env)
        sha = self._git("commit-tree", tree, "-p", base, "-m", message,
                        "-m", f"Experiment: {exp_id}")
        self._git("update-ref", f"{self.prefix}{exp_id}", sha)
        return sha

    def point(self, exp_id: int, sha: str | None) -> None:
        """The version's ref at an existing commit (the best, on the run's branch)."""
        if self.enabled and sha:
            self._git("update-ref", f"{self.prefix}{exp_id}", sha)

    def drop(self, exp_id: int) -> None:
        if self.enabled:
            subprocess.run(["git", "update-ref", "-d", f"{self.prefix}{exp_id}"], cwd=self.root,
                           capture_output=True, check=False)

    def existing(self) -> list[int]:
        """The experiment ids that have a ref now."""
        if not self.enabled:
            return []
        out = self._git("for-each-ref", "--format=%(refname)", self.prefix.rsplit("/", 1)[0])
        return sorted(int(line.rsplit("/v", 1)[1]) for line in out.splitlines()
                      if line.startswith(self.prefix) and line.rsplit("/v", 1)[1].isdigit())
