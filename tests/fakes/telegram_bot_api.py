"""A local HTTP server speaking the Telegram Bot API's ``sendMessage`` (and ``getMe``), for
tests: the Bot API is a service that cannot run here.

    async with FakeBotApi(token="123:abc", chats={-100}) as bot:
        ... POST f"{bot.api_url}/bot123:abc/sendMessage" ...
        assert bot.messages[0].text == "hello"

What it checks, as Telegram does (core.telegram.org/bots/api#sendmessage, #html-style):

- the token in the path: any other answers 401 ``Unauthorized``;
- parameters from the query string, a form or a JSON body (values may be strings, as
  Alertmanager's client sends them);
- ``chat_id`` names a known chat, else 400 ``Bad Request: chat not found``;
- ``text`` is not empty and at most 4,096 characters after entity parsing (counted in
  UTF-16 code units), else 400 ``message text is empty`` / ``message is too long``;
- with ``parse_mode: HTML``: only the tags Telegram supports, properly nested and closed,
  ``<`` only as the start of a tag; ``&`` starts an entity where one is spelt (``&lt;``,
  ``&gt;``, ``&amp;``, ``&quot;``, ``&#NN;``, ``&#xNN;``) and is literal otherwise, as in
  TDLib; anything else is 400 ``Bad Request: can't parse entities: ...``.

Faults are queued with :meth:`FakeBotApi.fail_next` (a 429 with ``retry_after``, a 5xx, a
400 with any description); ``delay`` answers every request late. Every request is recorded
in ``requests`` with its outcome; accepted messages also in ``messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from tests.fakes.local_server import LocalApp

MAX_MESSAGE_LENGTH = 4096

#: Tags Telegram's HTML style accepts, and the attributes each may carry.
ALLOWED_TAGS: Mapping[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "a": frozenset({"href"}),
    "code": frozenset({"class"}),
    "pre": frozenset(),
    "tg-spoiler": frozenset(),
    "span": frozenset({"class"}),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)\s*(/?)>")
_ATTRIBUTE = re.compile(r"""\s*([a-zA-Z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_ENTITY = re.compile(r"&(lt|gt|amp|quot);?|&#([0-9]{1,7});?|&#x([0-9a-fA-F]{1,6});?")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class EntityError(ValueError):
    """Telegram's "can't parse entities"."""


def _decode_entities(raw: str) -> str:
    def replace(found: re.Match[str]) -> str:
        if found.group(1):
            return _NAMED[found.group(1)]
        code = int(found.group(2), 10) if found.group(2) else int(found.group(3), 16)
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return found.group(0)
        return chr(code)

    return _ENTITY.sub(replace, raw)


def parse_telegram_html(text: str) -> str:
    """The visible text of ``text`` in Telegram's HTML style; raises :class:`EntityError`
    where Telegram answers "can't parse entities"."""
    visible: list[str] = []
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        lt = text.find("<", pos)
        if lt < 0:
            visible.append(_decode_entities(text[pos:]))
            break
        visible.append(_decode_entities(text[pos:lt]))
        found = _TAG.match(text, lt)
        offset = len(text[:lt].encode())
        if found is None:
            raise EntityError(f"Unexpected end of name token at byte offset {offset}")
        closing, name, attributes, self_closing = found.groups()
        name = name.lower()
        if closing:
            if not stack:
                raise EntityError(f"Unexpected end tag at byte offset {offset}")
            if stack[-1] != name:
                raise EntityError(
                    f'Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", '
                    f'found "</{name}>"'
                )
            stack.pop()
        else:
            if name not in ALLOWED_TAGS or self_closing:
                raise EntityError(f'Unsupported start tag "{name}" at byte offset {offset}')
            if name == "a" and "href" not in _attribute_names(attributes):
                raise EntityError(f"Can't find the URL of a link at byte offset {offset}")
            if name == "span" and "tg-spoiler" not in attributes:
                raise EntityError(f'Unsupported start tag "span" at byte offset {offset}')
            stack.append(name)
        pos = found.end()
    if stack:
        raise EntityError(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(visible)


def _attribute_names(attributes: str) -> set[str]:
    return {found.group(1).lower() for found in _ATTRIBUTE.finditer(attributes)}


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True, slots=True)
class Fault:
    """One queued answer instead of the normal one."""

    status: int
    description: str
    retry_after: int | None = None


@dataclass(slots=True)
class BotRequest:
    """One request the fake received, with what it answered."""

    method: str
    at: float  # time.monotonic() on arrival
    chat_id: int | str | None
    message_thread_id: int | None
    text: str | None
    parse_mode: str | None
    disable_notification: bool
    params: dict[str, Any]
    status: int = 0
    description: str = ""


@dataclass(slots=True)
class SentMessage:
    message_id: int
    chat_id: int | str
    message_thread_id: int | None
    text: str  # as sent (with its markup)
    visible_text: str  # after entity parsing
    parse_mode: str | None
    disable_notification: bool
    at: float


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1"}
    return bool(value)


def _as_chat(value: object) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else text


def _as_int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


class FakeBotApi(LocalApp):
    """The Bot API on 127.0.0.1:<ephemeral port>; ``api_url`` is what ``api_url`` settings
    take (``http://127.0.0.1:<port>``). Only ``token`` is accepted, only ``chats`` exist."""

    def __init__(
        self, token: str, chats: Iterable[int | str] = (-1001234567890,), *, delay: float = 0.0
    ) -> None:
        self.token = token
        self.chats: set[int | str] = {c for c in map(_as_chat, chats) if c is not None}
        self.delay = delay
        self.requests: list[BotRequest] = []
        self.messages: list[SentMessage] = []
        self._faults: deque[Fault] = deque()
        self._arrived = asyncio.Condition()
        super().__init__()

    @property
    def api_url(self) -> str:
        return self.url

    def routes(self) -> list[BaseRoute]:
        return [Route("/bot{token}/{method}", self._dispatch, methods=["GET", "POST"])]

    def fail_next(
        self,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` sendMessage calls with ``status`` instead."""
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after or 1}",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(status, "Bad Request")
        for _ in range(times):
            self._faults.append(Fault(status, description, retry_after))

    async def wait_for_messages(self, count: int, within: float = 10.0) -> list[SentMessage]:
        """Wait until ``count`` messages were accepted (TimeoutError after ``within`` s)."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.messages) >= count)
        return list(self.messages)

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if "application/json" in content_type:
            body = await request.body()
            if body:
                loaded = json.loads(body)
                if isinstance(loaded, dict):
                    params.update(loaded)
        elif "form" in content_type:
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        return params

    @staticmethod
    def _error(status: int, description: str, **extra: Any) -> JSONResponse:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        body.update(extra)
        return JSONResponse(body, status_code=status)

    async def _dispatch(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        params = await self._params(request)
        record = BotRequest(
            method=method,
            at=time.monotonic(),
            chat_id=_as_chat(params.get("chat_id")),
            message_thread_id=_as_int(params.get("message_thread_id")),
            text=None if params.get("text") is None else str(params.get("text")),
            parse_mode=None if params.get("parse_mode") is None else str(params["parse_mode"]),
            disable_notification=_as_bool(params.get("disable_notification", False)),
            params=params,
        )
        self.requests.append(record)
        response = await self._answer(request, record)
        record.status = response.status_code
        if response.status_code != 200:
            record.description = json.loads(bytes(response.body))["description"]
        async with self._arrived:
            self._arrived.notify_all()
        return response

    async def _answer(self, request: Request, record: BotRequest) -> JSONResponse:
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), timeout=self.delay)
        if request.path_params["token"] != self.token:
            return self._error(401, "Unauthorized")
        if record.method == "getMe":
            return JSONResponse(
                {
                    "ok": True,
                    "result": {
                        "id": int(self.token.split(":", 1)[0]) if ":" in self.token else 1,
                        "is_bot": True,
                        "first_name": "Fake alerts bot",
                        "username": "fake_alerts_bot",
                    },
                }
            )
        if record.method != "sendMessage":
            return self._error(404, "Not Found")
        if self._faults:
            fault = self._faults.popleft()
            extra: dict[str, Any] = {}
            if fault.retry_after is not None:
                extra["parameters"] = {"retry_after": fault.retry_after}
            return self._error(fault.status, fault.description, **extra)
        return self._send_message(record)

    def _send_message(self, record: BotRequest) -> JSONResponse:
        if record.chat_id is None:
            return self._error(400, "Bad Request: chat_id is empty")
        if record.chat_id not in self.chats:
            return self._error(400, "Bad Request: chat not found")
        text = record.text or ""
        mode = record.parse_mode or ""
        if mode and mode not in {"HTML", "Markdown", "MarkdownV2"}:
            return self._error(400, f"Bad Request: unsupported parse_mode {mode!r}")
        if mode == "HTML":
            try:
                visible = parse_telegram_html(text)
            except EntityError as exc:
                return self._error(400, f"Bad Request: can't parse entities: {exc}")
        else:
            visible = text
        if not visible.strip():
            return self._error(400, "Bad Request: message text is empty")
        if utf16_length(visible.strip()) > MAX_MESSAGE_LENGTH:
            return self._error(400, "Bad Request: message is too long")
        message = SentMessage(
            message_id=len(self.messages) + 1,
            chat_id=record.chat_id,
            message_thread_id=record.message_thread_id,
            text=text,
            visible_text=visible,
            parse_mode=record.parse_mode,
            disable_notification=record.disable_notification,
            at=record.at,
        )
        self.messages.append(message)
        chat_id = record.chat_id
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "date": int(time.time()),
            "chat": {
                "id": chat_id if isinstance(chat_id, int) else -1000000000001,
                "type": "supergroup",
                "title": "Alerts",
            },
            "text": visible,
        }
        if record.message_thread_id is not None:
            result["message_thread_id"] = record.message_thread_id
            result["is_topic_message"] = True
        return JSONResponse({"ok": True, "result": result})
