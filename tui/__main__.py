"""`python -m tui`: stop signals are caught before the CLI's modules import (engine/signals.py)."""

from engine import signals

signals.catch_early()

from tui.cli import main  # noqa: E402 - after the signals are caught, on purpose

raise SystemExit(main())
