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
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from tests.fakes.local_server import LocalApp

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}


class FakeChatServer(LocalApp):
    """An OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1:<ephemeral port>."""

    def __init__(self, reply: str = "Hello from the fake model.", *, status: int = 200) -> None:
        self.reply = reply
        self.status = status
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/chat/completions", self._completions, methods=["POST"])]

    async def _completions(self, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        self.auth_headers.append(request.headers.get("authorization", ""))
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), timeout=self.delay)
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
