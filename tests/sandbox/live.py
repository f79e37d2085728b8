"""The sandbox's tests live: a sandbox (or its server alone) served in the test's event loop,
and real, unmodified Telethon clients against it, each an offline ``StringSession`` that
holds an account's key and points at the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from telethon import TelegramClient, events
from telethon.crypto import AuthKey
from telethon.network.connection import Connection, ConnectionTcpFull
from telethon.sessions import StringSession

from tgfleet.sandbox.server import SandboxServer

CATCH_UP = "updates.GetDifferenceRequest"
START_WITHIN = 10.0

T = TypeVar("T")


@asynccontextmanager
async def serving(
    component: AbstractAsyncContextManager[T], *, stop_within: float = 10
) -> AsyncIterator[T]:
    """``component`` entered (within ``START_WITHIN`` s) for the block, then left within
    ``stop_within`` s."""
    async with AsyncExitStack() as stack:
        async with asyncio.timeout(START_WITHIN):
            running = await stack.enter_async_context(component)
        try:
            yield running
        finally:
            async with asyncio.timeout(stop_within):
                await stack.aclose()


@asynccontextmanager
async def telethon_client(
    port: int, key: bytes, connection: type[Connection] = ConnectionTcpFull, **kwargs: Any
) -> AsyncIterator[Any]:
    """A real TelegramClient whose offline session points at the sandbox with ``key``."""
    session = StringSession()
    session.set_dc(2, "127.0.0.1", port)
    session.auth_key = AuthKey(data=key)
    client = TelegramClient(
        session, 12345, "0" * 32, connection=connection, retry_delay=0.1, **kwargs
    )
    try:
        yield client
    finally:
        async with asyncio.timeout(10):
            await client.disconnect()


async def wait_until(predicate: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        # The server's stats have no change notification, so poll them.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@asynccontextmanager
async def connected(server: SandboxServer, key: bytes, **kwargs: Any) -> AsyncIterator[Any]:
    """A real TelegramClient for the account holding ``key``, connected and past its
    initial catch-up."""

    def catch_ups() -> int:
        return server.stats().requests.get(CATCH_UP, 0)

    async with telethon_client(server.port, key, **kwargs) as client:
        before = catch_ups()
        async with asyncio.timeout(10):
            await client.connect()
        await wait_until(lambda: catch_ups() > before)
        yield client


@asynccontextmanager
async def connected_pair(
    server: SandboxServer, first: bytes, second: bytes, *, within: float = 30, **kwargs: Any
) -> AsyncIterator[tuple[Any, Any]]:
    """Clients of the accounts holding ``first`` and ``second``, both connected, then
    ``within`` seconds for the block."""
    async with (
        connected(server, first, **kwargs) as one,
        connected(server, second, **kwargs) as other,
        asyncio.timeout(within),
    ):
        yield one, other


def collect(client: Any) -> asyncio.Queue[Any]:
    """Every events.NewMessage of ``client`` in arrival order."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_message(event: Any) -> None:
        await queue.put(event)

    client.add_event_handler(on_message, events.NewMessage)
    return queue


async def next_event(queue: asyncio.Queue[Any], within: float = 10) -> Any:
    async with asyncio.timeout(within):
        return await queue.get()
