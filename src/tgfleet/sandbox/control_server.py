"""`ControlServer`: the control API served by uvicorn as a task in the sandbox's own loop.

uvicorn's own signal handling is switched off: the process that owns the loop
(``tgfleet sandbox run``) decides when to stop. The API has no authentication, so the
server binds loopback only unless ``allow_remote`` is passed explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Generator
from typing import Self

import uvicorn
from fastapi import FastAPI

from tgfleet.exceptions import InvalidInput
from tgfleet.logging import get_logger

log = get_logger(__name__)

LOOPBACK_NAMES = frozenset({"localhost"})
STARTUP_TIMEOUT = 10.0
#: uvicorn waits for open requests to finish; past this the serving task is cancelled.
SHUTDOWN_TIMEOUT = 10.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: the sandbox's owner handles SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ControlServer:
    """Serve an ASGI app with uvicorn as a task in the running event loop.

    ``async with ControlServer(app) as control:`` binds the socket (port 0 picks a free one;
    the bound one is ``control.port``), hands it to uvicorn and returns once uvicorn accepts
    requests; leaving the block stops uvicorn. Refuses a non-loopback ``host`` unless
    ``allow_remote``.
    """

    def __init__(
        self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise InvalidInput(
                f"the control API has no authentication; refusing to bind {host!r} "
                "(use a loopback address, or allow_remote to override)"
            )
        self.app = app
        self.host = "127.0.0.1" if host.lower() == "localhost" else host
        self.port = port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        """Bind and start serving; return once uvicorn accepts requests."""
        try:
            await self._serve()
        except BaseException:
            task, self._server, self._task = self._task, None, None
            if task is not None and not task.done():  # e.g. uvicorn not up in time
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            raise
        return self

    async def _serve(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # Outlive the clients' own keep-alive (httpx: 5 s) so a pooled connection is
            # never closed by us at the moment a client reuses it (a spurious ReadError
            # when a slow post kept the loop busy).
            timeout_keep_alive=75,
        )
        server = self._server = _EmbeddedServer(config)
        task = self._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    sock.close()
                    task.result()  # re-raise uvicorn's failure
                    raise RuntimeError("the control server stopped while starting")
                await asyncio.sleep(0.01)
        log.info("sandbox.control_listening", host=self.host, port=self.port)

    async def __aexit__(self, *exc_info: object) -> None:
        """Ask uvicorn to exit and wait for it (cancel it after ``SHUTDOWN_TIMEOUT``)."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
