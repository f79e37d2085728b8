"""The worker's own small HTTP port (``TGFLEET_WORKER_METRICS_PORT``, default 9464):
``/metrics`` for Prometheus and the probes ``/livez``, ``/readyz``, ``/health``, ``/healthz``
for Kubernetes. Nothing else: the API lives in ``tgfleet api``.

It runs in the worker's event loop (uvicorn without its own signal handling or lifespan),
so ``/livez`` answering means the loop that runs the clients is alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from tgfleet import __version__
from tgfleet.components import Components, publish
from tgfleet.health.endpoints import router as health_router
from tgfleet.kit.lifecycle import Lifecycle
from tgfleet.telemetry.endpoints import router as telemetry_router


def build_app(components: Components) -> FastAPI:
    """The probe-and-metrics app, whose shared routes use the worker's ``components``."""
    app = FastAPI(
        title="tgfleet worker",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    publish(app, components)
    app.include_router(health_router)
    app.include_router(telemetry_router)
    return app


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the worker owns SIGTERM/SIGINT (it drains its
    accounts first, then stops this server)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerHttp(Lifecycle):
    """Serves :func:`build_app` on a listening socket inside the running loop (the caller
    binds it first: a busy port is refused before the worker changes anything)."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        self._sock = sock
        self._server = _Server(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._sock]), name="worker:http"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it could not start (port in use, ...)
                msg = "the worker's HTTP server stopped before it started"
                raise RuntimeError(msg)
            await asyncio.sleep(0.01)
        return self.port

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)
        self._sock.close()
