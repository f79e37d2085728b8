"""A TCP proxy for tests: put it between processes and a server, then cut the line.

    async with TcpProxy(target_port=5432) as proxy:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/db"
        ...
        await proxy.pause()   # every client connection closed, new ones closed at once
        await proxy.resume()  # connections pass again

It listens on 127.0.0.1 with an ephemeral port in the test's event loop and forwards each
accepted connection to ``target_host:target_port``. While paused the listening socket stays
bound (the port cannot be taken by anyone else), but every connection it accepts is closed
before a byte is read or forwarded: to a client that is a server going away, as a restarted
PostgreSQL is (asyncpg fails the connect at once instead of waiting on a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib

from tgfleet.kit.lifecycle import Lifecycle

CONNECT_TIMEOUT_SECONDS = 5.0
CHUNK = 65536


class TcpProxy(Lifecycle):
    def __init__(self, *, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.paused = False
        self.accepted = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None

    async def pause(self) -> None:
        """Close every client connection now and refuse new ones until :meth:`resume`."""
        self.paused = True
        await self._cut()

    async def resume(self) -> None:
        self.paused = False

    @property
    def connections(self) -> int:
        """Client connections being forwarded right now."""
        return len(self._pipes)

    async def _cut(self) -> None:
        for writer in list(self._writers):
            _abort(writer)
        pipes = list(self._pipes)
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            self.refused += 1
            _abort(writer)
            return
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port),
                CONNECT_TIMEOUT_SECONDS,
            )
            upstream = up_writer
            self._writers.add(up_writer)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(reader, up_writer))
                group.create_task(_pump(up_reader, writer))
        except (OSError, TimeoutError, ExceptionGroup):
            pass  # either side went away: close both below
        finally:
            _abort(writer)
            self._writers.discard(writer)
            if upstream is not None:
                _abort(upstream)
                self._writers.discard(upstream)
            self._pipes.discard(task)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while chunk := await source.read(CHUNK):
        sink.write(chunk)
        await sink.drain()
    # EOF from one side: close the other at once (PostgreSQL's protocol never half-closes).
    _abort(sink)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close at once (RST, no lingering): the peer sees the connection die."""
    transport = writer.transport
    if not transport.is_closing():
        transport.abort()
