"""A local HTTP server speaking the OpenAI chat-completions protocol, for tests.

    async with FakeChatServer(reply="Hi!") as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="k")
        ...
        assert llm.requests[0]["model"] == "m"

Set ``status`` to answer with that HTTP error, ``delay`` to answer late. It runs a real
uvicorn server on 127.0.0.1 with an ephemeral port, in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

START_TIMEOUT_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 5.0

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class _Server(uvicorn.Server):
    """uvicorn that leaves the test runner's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FakeChatServer:
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1:<ephemeral port>."""

    def __init__(self, reply: str = "Hello from the fake model.", *, status: int = 200) -> None:
        self.reply = reply
        self.status = status
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.base_url = ""
        self._closing = asyncio.Event()
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def _completions(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.auth_headers.append(request.headers.get("authorization", ""))
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.delay)
        if self.status != 200:
            kind = _ERROR_TYPES.get(self.status, "server_error")
            return JSONResponse(
                {
                    "error": {
                        "message": f"fake error {self.status}",
                        "type": kind,
                        "code": kind if self.status < 500 else None,
                        "param": None,
                    }
                },
                status_code=self.status,
            )
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(self.reply.split())
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def __aenter__(self) -> FakeChatServer:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
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
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing.set()
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
