"""The lean footer: one rebuild per burst of binding updates, none when nothing it shows
changed, and still following a key that becomes disabled."""

from __future__ import annotations

from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding

from tui.fixtures import wait_until
from tui.footer import LeanFooter


class Toggle(App[None]):
    BINDINGS = [Binding("x", "go", "Go"), Binding("y", "stay", "Stay")]

    def __init__(self) -> None:
        super().__init__()
        self.go_enabled = True

    def compose(self) -> ComposeResult:
        yield LeanFooter(compact=True, show_command_palette=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "go" and not self.go_enabled else True

    def action_go(self) -> None:
        pass

    def action_stay(self) -> None:
        pass


async def test_the_footer_rebuilds_only_when_its_keys_change() -> None:
    app = Toggle()
    async with app.run_test() as pilot:
        footer = app.query_one(LeanFooter)
        await wait_until(pilot, lambda: len(footer.query("FooterKey")) == 2, 5, "the keys")
        rebuilds = 0
        recompose = footer.recompose

        async def counted() -> Any:
            nonlocal rebuilds
            rebuilds += 1
            return await recompose()

        footer.recompose = counted  # type: ignore[method-assign]
        for _ in range(5):
            app.refresh_bindings()
        await pilot.pause(0.2)
        assert rebuilds == 0  # the same keys: nothing to rebuild

        app.go_enabled = False
        for _ in range(5):
            app.refresh_bindings()
        await wait_until(pilot, lambda: footer.query("FooterKey").first().has_class("-disabled"),
                         5, "the dimmed key")
        await pilot.pause(0.2)
        assert rebuilds == 1  # one burst, one rebuild
