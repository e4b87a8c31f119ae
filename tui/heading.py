"""A full screen's head line (the tree `t`, an experiment, labelling `l`): always one line,
cut with … at the terminal's width rather than wrapped (at 80 columns the tree's head took
two lines, and the experiment's pushed its description down)."""

from __future__ import annotations

from textual.widgets import Static


class Heading(Static):
    """One line over a screen; text past the width ends in an ellipsis. Put the parts that
    matter most first: the end is what is cut."""

    DEFAULT_CSS = """
    Heading {
        height: 1; padding: 0 1; background: $boost;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """
