"""The sandbox's HTTP control API: inject faults, post as simulated members, observe.

A small FastAPI app (`create_control_app`) served by ``control_server.ControlServer`` (uvicorn
running as a task **inside the sandbox's own event loop**), so endpoints touch the
``WorldState``, the ``FaultRegistry`` and the ``SandboxServer`` directly, with no locks and
no threads. uvicorn's own signal handling is switched off: the process that owns the loop
(``tgfleet sandbox run``) decides when to stop.

There is no authentication. The API therefore binds loopback only (``127.0.0.1``, ``::1``,
``localhost``); `ControlServer` refuses any other host unless ``allow_remote=True`` is passed
explicitly (anyone who reaches the port can break every account's connections).

Endpoints (JSON in and out; errors are ``{"error": code, "detail": message}`` with 400 for
bad input and 404 for an unknown account, group or rule):

=========================================  ====================================================
``POST /faults``                           add a rule: ``kind``, ``account`` (id or username),
                                           ``group``, ``method``, ``seconds``, ``count``
``GET /faults``                            the live rules
``DELETE /faults/{id}``, ``DELETE /faults``  clear one rule, or all
``POST /accounts/{account}/drop``          close every connection of the account
``POST /accounts/{account}/refuse``        ``{"seconds": T}``: refuse new connections for T s
``POST /accounts/{account}/latency``       ``{"seconds": S}``: delay every answer (0 clears)
``POST /groups/{group}/messages``          ``{"sender", "text", "reply_to_account"?}``: a
                                           simulated member posts; pushed to fleet accounts;
                                           answers its ``origin_id`` and ``message_ids``
``GET /stats``                             connections, duplicate use, requests per method,
                                           messages each fleet account sent: ``group_id``,
                                           ``message_id``, ``at``, ``text``, ``origin_id``,
                                           ``reply_to_origin``, ``reply_to_sender``
``GET /health``                            ``{"status": "ok", ...}``
=========================================  ====================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tgfleet.exceptions import AppError, InvalidInput, NotFound
from tgfleet.logging import get_logger
from tgfleet.sandbox.delivery import Delivery
from tgfleet.sandbox.faults import FaultKind, FaultRegistry, FaultRule
from tgfleet.sandbox.mtproto import key_id_of
from tgfleet.sandbox.server import SandboxServer
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.world import World

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message a fleet account sent (through ``messages.sendMessage``)."""

    account_id: int
    group_id: int
    #: The id in the sender's own view.
    message_id: int
    #: Unix time the sandbox accepted it.
    at: float
    text: str
    #: The message's world-wide id (``Delivery.origin_id``).
    origin_id: int
    #: The world-wide id of the message it replies to; None if it is not a reply.
    reply_to_origin: int | None = None
    #: Who sent the replied-to message (a member or a fleet account id); None if it is not
    #: a reply, or the replied message is older than the state's ``sender_limit`` events.
    reply_to_sender: int | None = None


class ControlledSandbox(Protocol):
    """What the control API drives: the runner's ``Sandbox`` provides all of it."""

    @property
    def world(self) -> World: ...

    @property
    def state(self) -> WorldState: ...

    @property
    def faults(self) -> FaultRegistry: ...

    @property
    def server(self) -> SandboxServer: ...

    async def publish(self, deliveries: Sequence[Delivery]) -> int: ...

    def sent_messages(self) -> Sequence[SentMessage]: ...


# --------------------------------------------------------------------------- schemas


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultCreate(_Body):
    """A fault rule to add. ``count`` absent: 1 for flood_wait/slowmode_wait, otherwise the
    rule holds from now on (``count`` given: the next ``count`` matching calls)."""

    kind: FaultKind
    account: int | str | None = None
    group: int | str | None = None
    method: str | None = None
    seconds: int | None = Field(default=None, ge=1)
    count: int | None = Field(default=None, ge=1)


class SecondsBody(_Body):
    seconds: float = Field(ge=0, le=86_400)


class MemberPost(_Body):
    sender: int | str
    text: str
    reply_to_account: int | str | None = None


# --------------------------------------------------------------------------- app


class _Lookup:
    """Resolve the API's account/group/user references (id or username) in one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.username_by_key_id = {key_id_of(a.auth_key): a.username for a in world.accounts}
        self.groups_by_username = {
            g.username.lower(): g.id for g in world.groups if g.username is not None
        }

    def _user_id(self, ref: int | str) -> int | None:
        if isinstance(ref, int):
            return ref
        text = ref.strip().removeprefix("@")
        if text.lstrip("-").isdigit():
            return int(text)
        return self.world.user_ids_by_username.get(text.lower())

    def account(self, ref: int | str) -> int:
        user_id = self._user_id(ref)
        if user_id is None or user_id not in self.world.accounts_by_id:
            raise NotFound(f"no fleet account {ref!r}")
        return user_id

    def member(self, ref: int | str) -> int:
        user_id = self._user_id(ref)
        if user_id is None or user_id not in self.world.members_by_id:
            raise NotFound(f"no simulated member {ref!r}")
        return user_id

    def group(self, ref: int | str) -> int:
        if isinstance(ref, str):
            text = ref.strip().removeprefix("@")
            group_id = int(text) if text.isdigit() else self.groups_by_username.get(text.lower())
        else:
            group_id = ref
        if group_id is None or group_id not in self.world.groups_by_id:
            raise NotFound(f"no group {ref!r}")
        return group_id

    def auth_key_id(self, account_id: int) -> int:
        return key_id_of(self.world.accounts_by_id[account_id].auth_key)

    def by_username(self, counts: dict[int, int]) -> dict[str, int]:
        return {self.username_by_key_id.get(key_id, str(key_id)): n for key_id, n in counts.items()}


def _rule_read(rule: FaultRule, world: World) -> dict[str, Any]:
    account = world.accounts_by_id.get(rule.account_id) if rule.account_id else None
    return {
        "id": rule.id,
        "kind": rule.kind,
        "code": rule.code,
        "message": rule.message,
        "account_id": rule.account_id,
        "account": account.username if account else None,
        "group_id": rule.group_id,
        "method": rule.method,
        "remaining": rule.remaining,
    }


def _add_fault(faults: FaultRegistry, lookup: _Lookup, body: FaultCreate) -> FaultRule:
    account = None if body.account is None else lookup.account(body.account)
    group = None if body.group is None else lookup.group(body.group)

    def need_account() -> int:
        if account is None:
            raise InvalidInput(f"a {body.kind} fault needs an account")
        return account

    def need_group() -> int:
        if group is None:
            raise InvalidInput(f"a {body.kind} fault needs a group")
        return group

    def need_seconds() -> int:
        if body.seconds is None:
            raise InvalidInput(f"a {body.kind} fault needs seconds")
        return body.seconds

    match body.kind:
        case "flood_wait":
            return faults.flood_wait(
                need_seconds(),
                account=account,
                method=body.method,
                group=group,
                count=body.count or 1,
            )
        case "slowmode_wait":
            return faults.slowmode_wait(
                need_seconds(), account, need_group(), count=body.count or 1
            )
        case "chat_write_forbidden":
            return faults.chat_write_forbidden(account, need_group(), count=body.count)
        case "frozen":
            return faults.add(
                "frozen",
                420,
                "FROZEN_METHOD_INVALID",
                account=need_account(),
                group=group,
                method=body.method,
                count=body.count,
            )
        case "auth_key_unregistered" | "session_revoked" | "user_deactivated_ban":
            return faults.add(
                body.kind,
                401,
                body.kind.upper(),
                account=need_account(),
                count=body.count,
            )


def create_control_app(sandbox: ControlledSandbox) -> FastAPI:
    """The control API for one sandbox (see the module docstring for the endpoints)."""
    app = FastAPI(
        title="tgfleet sandbox control",
        description="Faults and observation for the local MTProto sandbox. Loopback only.",
        docs_url=None,
        redoc_url=None,
    )
    lookup = _Lookup(sandbox.world)

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        del request
        return JSONResponse({"error": exc.code, "detail": exc.message}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        del request
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return JSONResponse({"error": "invalid_input", "detail": problems}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        del request
        error = "not_found" if exc.status_code == 404 else "http_error"
        return JSONResponse({"error": error, "detail": str(exc.detail)}, exc.status_code)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and the MTProto port clients connect to."""
        return {"status": "ok", "port": sandbox.server.port}

    @app.post("/faults", status_code=201)
    async def add_fault(body: FaultCreate) -> dict[str, Any]:
        """Add a fault rule; returns it with its ``id``."""
        rule = _add_fault(sandbox.faults, lookup, body)
        log.info("sandbox.fault_added", rule_id=rule.id, kind=rule.kind)
        return _rule_read(rule, sandbox.world)

    @app.get("/faults")
    async def list_faults() -> list[dict[str, Any]]:
        """The live fault rules, oldest first."""
        return [_rule_read(r, sandbox.world) for r in sandbox.faults.rules()]

    @app.delete("/faults/{rule_id}")
    async def clear_fault(rule_id: int) -> dict[str, int]:
        """Remove one rule (404 when it does not exist, e.g. already consumed)."""
        if not sandbox.faults.clear(rule_id):
            raise NotFound(f"no fault rule {rule_id}")
        return {"cleared": 1}

    @app.delete("/faults")
    async def clear_faults() -> dict[str, int]:
        """Remove every rule."""
        return {"cleared": sandbox.faults.clear()}

    @app.post("/accounts/{account}/drop")
    async def drop(account: str) -> dict[str, Any]:
        """Close every live connection of the account (the clients reconnect)."""
        account_id = lookup.account(account)
        dropped = await sandbox.server.drop(lookup.auth_key_id(account_id))
        return {"account_id": account_id, "dropped": dropped}

    @app.post("/accounts/{account}/refuse")
    async def refuse(account: str, body: SecondsBody) -> dict[str, Any]:
        """Close the account's new connections at their first packet for ``seconds``."""
        account_id = lookup.account(account)
        sandbox.server.refuse(lookup.auth_key_id(account_id), body.seconds)
        return {"account_id": account_id, "seconds": body.seconds}

    @app.post("/accounts/{account}/latency")
    async def latency(account: str, body: SecondsBody) -> dict[str, Any]:
        """Delay every answer to the account by ``seconds`` (0 clears)."""
        account_id = lookup.account(account)
        sandbox.server.set_latency(lookup.auth_key_id(account_id), body.seconds)
        return {"account_id": account_id, "seconds": body.seconds}

    @app.post("/groups/{group}/messages", status_code=201)
    async def post_message(group: str, body: MemberPost) -> dict[str, Any]:
        """A simulated member posts in the group; every fleet account in it gets the update."""
        group_id = lookup.group(group)
        sender = lookup.member(body.sender)
        reply_to = None if body.reply_to_account is None else lookup.account(body.reply_to_account)
        deliveries = sandbox.state.post(group_id, sender, body.text, reply_to_account=reply_to)
        pushed = await sandbox.publish(deliveries)
        return {
            "group_id": group_id,
            "sender_id": sender,
            "origin_id": sandbox.state.last_origin(group_id, sender),
            "message_ids": {str(d.account_id): d.message_id for d in deliveries},
            "deliveries": len(deliveries),
            "pushed": pushed,
        }

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """Connections, duplicate use and refusals per account (username), requests per
        method, and the messages each fleet account sent, oldest first."""
        snapshot = sandbox.server.stats()
        accounts = sandbox.world.accounts_by_id
        sent: dict[str, list[dict[str, Any]]] = {}
        for message in sandbox.sent_messages():
            sent.setdefault(accounts[message.account_id].username, []).append(
                {
                    "group_id": message.group_id,
                    "message_id": message.message_id,
                    "at": message.at,
                    "text": message.text,
                    "origin_id": message.origin_id,
                    "reply_to_origin": message.reply_to_origin,
                    "reply_to_sender": message.reply_to_sender,
                }
            )
        return {
            "connections": lookup.by_username(snapshot.connections),
            "connections_opened": snapshot.connections_opened,
            "duplicate_use": lookup.by_username(snapshot.duplicate_use),
            "refused": lookup.by_username(snapshot.refused),
            "opened": lookup.by_username(snapshot.opened),
            "bad_salts": lookup.by_username(snapshot.bad_salts),
            "requests": snapshot.requests,
            "messages_sent": sent,
        }

    return app
