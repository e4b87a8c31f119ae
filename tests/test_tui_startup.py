"""Start-up stays light: making the app on an existing store imports neither the engine's heavy
stack (pydantic, yaml, the LLM and SSH clients) nor sqlite_utils and the numpy it pulls in.
Each of these cost tenths of a second of the time to interactive (see bench/tui_perf.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tui.fixtures import build_store

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("sqlite_utils", "numpy", "pydantic", "yaml", "anthropic", "asyncssh", "engine.spec",
         "engine.loop", "engine.host")


def test_making_the_app_on_an_existing_store_imports_nothing_heavy(tmp_path: Path) -> None:
    db = tmp_path / "light.db"
    build_store(db, runs=2, experiments=40).close()  # migrations applied here, not below
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tui.app import make_app\n"
        f"app = make_app(Path({str(db)!r}), [], attach=True)\n"
        "app.board.load()\n"
        "app.board.select(next(iter(app.board.runs)))\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
