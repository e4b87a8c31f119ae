"""A footer that rebuilds its keys only when the keys it shows change.

Textual's `Footer` recomposes (unmounts and mounts ~30 key widgets, ~30 ms each time) on every
`bindings_updated` signal, and a screen sends one per focus change, per `refresh_bindings()` and
per screen event: six rebuilds in the dashboard's first half second, most of them identical.
This one coalesces a burst of signals into one check after the next refresh, and recomposes
only if what it would show differs from what it shows.

When the keys do not fit the width, it drops keys rather than cut one mid-word (issue 12:
`q Qui` at 80 columns): dimmed keys first, then the least important by the table of actions
(engine/actions.py), so quit, pause and help stay longest.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from engine.actions import priority


class LeanFooter(Footer):
    """`Footer`, rebuilt once per burst of binding updates and only when its keys changed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued = False
        self._shown: tuple[Any, ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        # As Footer.bindings_changed, with the recompose queued once and made conditional.
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._queued:
            self._queued = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._queued = False
        if not self.is_attached:
            return
        shown = self._keys()
        if shown != self._shown:
            self._shown = shown
            await self.recompose()

    def on_resize(self) -> None:
        if self._bindings_ready and not self._queued and self.is_attached:
            self._queued = True
            self.call_after_refresh(self._recompose_if_changed)

    def fitting(self) -> list[tuple[Binding, bool, str]]:
        """The keys shown: one per action, as many as fit the width without cutting one."""
        keys: dict[str, tuple[Binding, bool, str]] = {}
        for _, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show and binding.action not in keys:
                keys[binding.action] = (binding, enabled, tooltip)
        chosen = list(keys.values())
        width = self.size.width or self.app.size.width
        app = self.app

        def cells(key: tuple[Binding, bool, str]) -> int:
            binding = key[0]
            return len(app.get_key_display(binding)) + 1 + len(binding.description)

        # Compact keys are "k Label" with one cell between them.
        while chosen and sum(map(cells, chosen)) + len(chosen) - 1 > width:
            drop = max(range(len(chosen)), key=lambda i: (
                not chosen[i][1], priority(chosen[i][0].action), i))
            del chosen[drop]
        return chosen

    def compose(self) -> ComposeResult:
        # As Footer.compose without groups (none here) or the palette key (not shown).
        if not self._bindings_ready:
            return
        chosen = self.fitting()
        self.styles.grid_size_columns = len(chosen)
        for binding, enabled, tooltip in chosen:
            yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                            binding.action, disabled=not enabled,
                            tooltip=tooltip).data_bind(compact=Footer.compact)

    def _keys(self) -> tuple[Any, ...]:
        """Everything `compose` reads from the bindings, as a comparable key."""
        app = self.app
        keys = tuple(
            (binding.key, app.get_key_display(binding), binding.description, binding.action,
             enabled, tooltip, binding.group)
            for binding, enabled, tooltip in self.fitting())
        return keys, self.show_command_palette, self.compact
