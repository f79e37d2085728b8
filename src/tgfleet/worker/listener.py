"""Commands reach workers through PostgreSQL ``LISTEN``/``NOTIFY`` (DESIGN §8).

One asyncpg connection per worker listens on ``lease.notify.COMMAND_CHANNEL``; every
notification wakes the reconcile. Other channels may ride on the same connection
(``channels``: the reply claims other workers announce). When the connection drops, the
listener reconnects with backoff and the supervisor falls back to polling (``connected`` is
false meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tgfleet.lease.notify import COMMAND_CHANNEL
from tgfleet.logging import get_logger

log = get_logger(__name__)

CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 10.0


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from a SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class CommandListener:
    def __init__(
        self,
        database_url: str,
        on_command: Callable[[str], None],
        channels: Mapping[str, Callable[[str], None]] | None = None,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._on_command = on_command
        self._channels = dict(channels or {})
        self._connection: Any = None
        self._lost = asyncio.Event()
        self.connected = False
        self.notifications = 0
        self.reconnects = 0

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._listen()
                backoff = 0.5
                await self._lost.wait()
            except asyncio.CancelledError:
                await self._close()
                raise
            except Exception as exc:
                log.warning("worker.listener_failed", error=type(exc).__name__)
            self.connected = False
            self.reconnects += 1
            await self._close()
            self._on_command("command")  # something may have happened while deaf
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _listen(self) -> None:
        self._lost.clear()
        self._connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        self._connection.add_termination_listener(lambda _connection: self._lost.set())
        await self._connection.add_listener(COMMAND_CHANNEL, self._notified)
        for channel, callback in self._channels.items():
            await self._connection.add_listener(channel, _relay(callback))
        self.connected = True
        log.info("worker.listening", channel=COMMAND_CHANNEL)

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        self._on_command(payload or "command")

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)


def _relay(callback: Callable[[str], None]) -> Callable[[object, int, str, str], None]:
    def notified(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            callback(payload)
        except Exception as exc:  # a bad payload must not take the listener down
            log.warning("worker.notification_failed", error=type(exc).__name__)

    return notified
