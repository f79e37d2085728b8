"""Helpers for the health tests: a served app, TCP listeners that are up, closed or that
never complete a connect, and metric readings."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from tgfleet.app import create_app
from tgfleet.config import Settings


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and a client for it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield app, client


@asynccontextmanager
async def listener() -> AsyncIterator[int]:
    """A port on 127.0.0.1 that accepts connections (and closes them)."""

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connects are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose connects never complete: a listener with a backlog of 0, its queue
    filled and never accepted, so the kernel drops further SYNs (as a firewall would)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            fillers.append(filler)
        yield int(address[1])
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """A port that accepts connections and never sends a byte (a hung server)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


def sample(name: str, **labels: str) -> float:
    """A metric's current value in this process (0 when the series does not exist yet)."""
    value = REGISTRY.get_sample_value(name, labels)
    return value if value is not None else 0.0
