"""Hearing PostgreSQL ``NOTIFY``: one asyncpg connection that listens on a few channels,
reconnects with backoff when it drops, and says when it was deaf.

The worker wakes its reconcile on the account commands' channel (``worker/listener.py``);
the console's broadcaster wakes its tail of the account events (``account/live.py``). While
the connection is down ``connected`` is false and its owner polls instead; ``on_deaf`` runs
after each loss, because something may have been notified meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tgfleet.logging import get_logger

log = get_logger(__name__)

CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 10.0

#: A channel's callback: the notification's payload.
Callback = Callable[[str], None]


def asyncpg_dsn(database_url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from a SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class ChannelListener:
    """Listens on ``channels`` (name -> callback) until cancelled (``run``); ``name`` is
    the log's ``listener`` field."""

    def __init__(
        self,
        database_url: str,
        channels: Mapping[str, Callback],
        *,
        on_deaf: Callable[[], None],
        name: str,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._channels = dict(channels)
        self._on_deaf = on_deaf
        self._name = name
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
                self.connected = False
                await self._close()
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke it
                log.warning("listener.failed", listener=self._name, error=type(exc).__name__)
            self.connected = False
            self.reconnects += 1
            await self._close()
            self._on_deaf()  # something may have happened while deaf
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    async def _listen(self) -> None:
        self._lost.clear()
        self._connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT)
        self._connection.add_termination_listener(lambda _connection: self._lost.set())
        for channel, callback in self._channels.items():
            await self._connection.add_listener(channel, self._relay(callback))
        self.connected = True
        log.info("listener.listening", listener=self._name, channels=sorted(self._channels))

    def _relay(self, callback: Callback) -> Callable[[object, int, str, str], None]:
        def notified(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            self.notifications += 1
            try:
                callback(payload)
            except Exception as exc:  # noqa: BLE001 - a bad payload must not stop the listener
                log.warning(
                    "listener.notification_failed", listener=self._name, error=type(exc).__name__
                )

        return notified

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2.0)
