"""Commands reach workers through PostgreSQL ``LISTEN``/``NOTIFY`` (DESIGN §8).

One asyncpg connection per worker listens on ``lease.notify.COMMAND_CHANNEL``; every
notification wakes the reconcile. Other channels may ride on the same connection
(``channels``: the reply claims other workers announce). When the connection drops, the
listener reconnects with backoff and the supervisor falls back to polling (``connected`` is
false meanwhile). The mechanics are ``kit.pg_listener``'s (the console's broadcaster
listens the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tgfleet.kit.pg_listener import ChannelListener, asyncpg_dsn
from tgfleet.lease.notify import COMMAND_CHANNEL

__all__ = ["CommandListener", "asyncpg_dsn"]


class CommandListener(ChannelListener):
    """``on_command`` gets each command notification's payload, and ``"command"`` after the
    connection was lost (something may have happened while deaf)."""

    def __init__(
        self,
        database_url: str,
        on_command: Callable[[str], None],
        channels: Mapping[str, Callable[[str], None]] | None = None,
    ) -> None:
        super().__init__(
            database_url,
            {COMMAND_CHANNEL: lambda payload: on_command(payload or "command"), **(channels or {})},
            on_deaf=lambda: on_command("command"),
            name="worker",
        )
