"""The server the browser suite shares (`console_server`)."""

from __future__ import annotations

from tests.browser.conftest import DEMO_ACCOUNTS, ConsoleServer


def test_the_demo_comes_online(console_server: ConsoleServer) -> None:
    """It runs the demo: its 20 accounts come online, and the fixture's admin signs in
    with the password the fixture set (wait_online reads the API as that admin)."""
    counts = console_server.wait_online()
    assert counts["online"] == DEMO_ACCOUNTS == 20
