"""A reply's text from a compiled template: the variables a template sees, and the render.

Templates see ``message``, ``sender``, ``group`` and ``account`` (:data:`TEMPLATE_VARIABLES`;
a playbook naming anything else is refused when it is compiled). A render runs within the
sandbox's bounds (:mod:`tgfleet.playbook._sandbox`) and is cut to one Telegram message.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Template

from tgfleet.playbook._sandbox import render
from tgfleet.playbook.document import MAX_MESSAGE_CHARS
from tgfleet.playbook.message import AccountInfo, Message

TEMPLATE_VARIABLES = frozenset({"message", "sender", "group", "account"})


def variables(message: Message, account: AccountInfo) -> dict[str, Any]:
    """What a template sees of ``message`` and of the ``account`` answering it."""
    full_name = " ".join(
        part for part in (message.sender_first_name, message.sender_last_name) if part
    ).strip()
    name = full_name or (message.sender_username or "")
    mention = f"@{message.sender_username}" if message.sender_username else name
    return {
        "message": {"text": message.text, "id": message.message_id, "at": message.at},
        "sender": {
            "id": message.sender_id,
            "username": message.sender_username,
            "first_name": message.sender_first_name,
            "last_name": message.sender_last_name,
            "name": name,
            "mention": mention,
        },
        "group": {"id": message.chat_id, "title": message.chat_title},
        "account": {
            "label": account.label,
            "username": account.username,
            "first_name": account.first_name,
        },
    }


def render_text(template: Template, values: dict[str, Any]) -> str:
    """``template`` rendered within the sandbox's bounds, stripped and cut to one message."""
    return render(template, values).strip()[:MAX_MESSAGE_CHARS]


def describe(exc: Exception) -> str:
    """A render's or a call's failure, in a few words for a dry run's detail."""
    return f"{type(exc).__name__}: {exc}"[:300]
