"""A footer that rebuilds its keys only when the keys it shows change.

Textual's `Footer` recomposes (unmounts and mounts ~30 key widgets, ~30 ms each time) on every
`bindings_updated` signal, and a screen sends one per focus change, per `refresh_bindings()` and
per screen event: six rebuilds in the dashboard's first half second, most of them identical.
This one coalesces a burst of signals into one check after the next refresh, and recomposes
only if what it would show differs from what it shows.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


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

    def _keys(self) -> tuple[Any, ...]:
        """Everything `Footer.compose` reads from the bindings, as a comparable key."""
        app = self.app
        keys = tuple(
            (binding.key, app.get_key_display(binding), binding.description, binding.action,
             enabled, tooltip, binding.group)
            for _, binding, enabled, tooltip in self.screen.active_bindings.values()
            if binding.show)
        return keys, self.show_command_palette, self.compact
