"""An ASGI app served on 127.0.0.1:<ephemeral port> inside the test's event loop: the one
harness behind the local fakes of services that cannot run here (an LLM provider, the
Telegram Bot API) and small recording endpoints, which subclass `LocalApp`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import abstractmethod
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from tgfleet.kit.lifecycle import Lifecycle

START_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 5.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner owns the signals
        yield


class LocalServer(Lifecycle):
    """``async with LocalServer(app) as server: ... server.url ...``"""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # IPPROTO_TCP spelt out: asyncio turns Nagle off only on sockets whose proto says
        # TCP, and with Nagle on, each keep-alive answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            access_log=False,  # an access log would print token-bearing paths
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while not self._server.started:
                if self._task.done():
                    await self._task  # raises the startup error
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                    await self._task
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._socket is not None:
            self._socket.close()


class LocalApp(Lifecycle):
    """A fake service: the routes it answers, served by one `LocalServer` at ``url`` while
    it runs. ``closing`` is set when it stops, so an answer held back ends early."""

    def __init__(self) -> None:
        self.url = ""
        self.closing = asyncio.Event()
        self._http: LocalServer | None = None

    @abstractmethod
    def routes(self) -> list[BaseRoute]:
        """What the service answers."""

    async def start(self) -> None:
        self._http = LocalServer(Starlette(routes=self.routes()))
        await self._http.start()
        self.url = self._http.url

    async def stop(self) -> None:
        self.closing.set()
        if self._http is not None:
            await self._http.stop()
