"""What the worker hands the reply engine: one message, and the account that sees it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    chat_id: int  # Telethon marked id
    chat_title: str
    message_id: int
    sender_id: int | None
    sender_username: str | None
    sender_first_name: str
    sender_last_name: str | None
    at: datetime  # aware UTC
    dedupe_key: str  # the same for every fleet account that sees this one message
    reply_to_account: bool = False
    mentions_account: bool = False
    new_member: bool = False


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: uuid.UUID | None
    label: str
    username: str | None
    first_name: str | None
    tg_user_id: int | None
