"""How ``tgfleet account`` shows accounts: the observed states and orders it knows, the
table columns, the detail fields and the cells they are made of (from the API's items)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from tgfleet.cli._output import Column, ago


class State(enum.StrEnum):
    """The observed states (``tgfleet.models.AccountState``, which this module does not
    import: a remote command starts without the ORM; a test keeps the two equal)."""

    STOPPED = "stopped"
    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    FLOOD_WAIT = "flood_wait"
    QUARANTINED = "quarantined"
    STOPPING = "stopping"
    ERROR = "error"
    UNASSIGNED = "unassigned"


class Sort(enum.StrEnum):
    """The listing's orders (``tgfleet.account.schemas.AccountSort``; a test keeps them equal)."""

    LABEL = "label"
    LABEL_DESC = "-label"
    STATE = "state"
    STATE_DESC = "-state"
    SINCE = "since"
    SINCE_DESC = "-since"
    WORKER = "worker"
    WORKER_DESC = "-worker"
    CREATED = "created"
    CREATED_DESC = "-created"


STATE_STYLES = {
    "online": "green",
    "starting": "cyan",
    "stopping": "cyan",
    "reconnecting": "yellow",
    "flood_wait": "yellow",
    "unassigned": "yellow",
    "error": "red",
    "quarantined": "red",
}


def state_style(value: Any) -> str | None:
    return STATE_STYLES.get(str(value))


def reason(item: Mapping[str, Any]) -> str:
    """Why the account is in its state, short: the status's reason, else its last error."""
    status = item.get("status") or {}
    code, message = status.get("last_error_code"), status.get("last_error_message")
    if status.get("reason"):
        return str(status["reason"])
    if status.get("state") in {"error", "quarantined"} and (code or message):
        return ": ".join(str(part) for part in (code, message) if part)
    return ""


def worker_of(item: Mapping[str, Any]) -> str | None:
    """The worker holding the account's lease, else the one that last reported it."""
    holder = item.get("holder")
    return str(holder) if holder else (item.get("status") or {}).get("worker_id")


def _last_error(status: Mapping[str, Any]) -> str:
    parts = [status.get("last_error_code"), status.get("last_error_message")]
    text = ": ".join(str(part) for part in parts if part)
    return f"{text} ({status['last_error_at']})" if text and status.get("last_error_at") else text


def _when(value: str | None) -> str:
    """``2026-12-07T10:00:00.123456Z`` as ``2026-12-07 10:00:00`` (UTC, as the API gives)."""
    if not value:
        return ""
    return value.replace("T", " ")[:19]


def _moment(value: str | None) -> str:
    """``2026-12-07 10:00:00 (5m ago)``."""
    return f"{_when(value)} ({ago(value)} ago)" if value else ""


def _transition(event: Mapping[str, Any]) -> str:
    state, previous = event.get("state"), event.get("previous_state")
    if state and previous:
        return f"{previous} -> {state}"
    return str(state or "")


COLUMNS = (
    Column("id", "id", key=True),
    Column("label", "label", key=True),
    Column("state", "status.state", style=state_style, min_width=7),
    Column("reason", reason),
    Column("worker", worker_of),
    Column("since", lambda item: ago((item.get("status") or {}).get("since"))),
    Column("user id", "tg_user_id", wide=True),
    Column("username", "username", wide=True),
    Column("dc", "dc_id", wide=True),
    Column("desired", "desired_state", wide=True),
    Column("session", lambda item: (item.get("session") or {}).get("state") or "none", wide=True),
)

FIELDS = (
    Column("id", "id"),
    Column("label", "label"),
    Column("state", "status.state"),
    Column("since", lambda item: _moment((item.get("status") or {}).get("since"))),
    Column("reason", reason),
    Column("desired", "desired_state"),
    Column("worker", "status.worker_id"),
    Column("holder", "holder"),
    Column("user id", "tg_user_id"),
    Column("username", "username"),
    Column("dc", "dc_id"),
    Column("session", lambda item: (item.get("session") or {}).get("state") or "none"),
    Column("key", "session.kek_id", wide=True),
    Column("last error", lambda item: _last_error(item.get("status") or {})),
    Column("wait until", "status.wait_until"),
    Column("received", "status.messages_received"),
    Column("replies", "status.replies_sent"),
    Column("suppressed", "status.replies_suppressed"),
    Column("reconnects", "status.reconnects"),
    Column("restart seq", "restart_seq", wide=True),
    Column("created", "created_at"),
    Column("updated", "updated_at", wide=True),
)

EVENT_COLUMNS = (
    Column("id", "id", wide=True),
    Column("at", lambda e: _when(e.get("at")), min_width=19),
    Column("age", lambda e: ago(e.get("at"))),
    Column("kind", "kind", min_width=5),
    Column("state", _transition, min_width=7),
    Column("code", "code"),
    Column("message", lambda e: " ".join(str(e.get("message") or "").split())),
    Column("details", "details", wide=True),
)

MATCH_COLUMNS = (
    Column("id", "id", key=True),
    Column("label", "label", key=True),
    Column("state", "state", style=state_style),
)
