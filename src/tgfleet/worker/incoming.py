"""Telegram updates as the playbook sees them: a group message, or a member who joined.

Each becomes a :class:`~tgfleet.playbook.engine.Message` whose ``dedupe_key`` every fleet
account that sees the update computes alike, in every worker process, so the fleet answers
it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from telethon import events

from tgfleet.kit.clock import utcnow
from tgfleet.playbook.engine import Message

#: Who sent a message: Telegram id, username, first name (or a channel's title), last name.
Sender = tuple[int | None, str | None, str, str | None]


async def sender_of(event: Any) -> Sender:
    """The sender of a message (only its id when Telegram did not send the user)."""
    sender = await event.get_sender()
    if sender is None:
        return (event.sender_id, None, "", None)
    return (
        sender.id,
        getattr(sender, "username", None),
        getattr(sender, "first_name", None) or getattr(sender, "title", None) or "",
        getattr(sender, "last_name", None),
    )


def group_message(
    event: events.NewMessage.Event,
    sender: Sender,
    *,
    own_message_ids: Collection[int] | None,
    username: str | None,
) -> Message:
    """A message in a group; ``own_message_ids`` are the account's recent ones in that chat
    (a reply to one is a reply to the account), ``username`` the account's (a mention)."""
    message = event.message
    text = message.message or ""
    reply_to = message.reply_to.reply_to_msg_id if message.reply_to else None
    chat_id = int(event.chat_id)
    mention = bool(username) and f"@{username}".lower() in text.lower()
    return Message(
        text=text,
        chat_id=chat_id,
        chat_title=_title(event),
        message_id=message.id,
        sender_id=sender[0],
        sender_username=sender[1],
        sender_first_name=sender[2],
        sender_last_name=sender[3],
        at=_aware(message.date),
        dedupe_key=_dedupe_key(chat_id, message.id, sender[0], message.date, text),
        reply_to_account=reply_to is not None
        and own_message_ids is not None
        and reply_to in own_message_ids,
        mentions_account=mention or bool(message.mentioned and reply_to is None),
    )


def new_member(event: events.ChatAction.Event, user: Any) -> Message:
    """A user who joined (or was added to) a group, as an empty message from them."""
    chat_id = int(event.chat_id)
    action = event.action_message
    return Message(
        text="",
        chat_id=chat_id,
        chat_title=_title(event),
        message_id=action.id if action else 0,
        sender_id=user.id,
        sender_username=getattr(user, "username", None),
        sender_first_name=getattr(user, "first_name", None) or "",
        sender_last_name=getattr(user, "last_name", None),
        at=_aware(action.date if action else None),
        dedupe_key=_join_key(chat_id, user.id, action),
        new_member=True,
    )


def _title(event: Any) -> str:
    chat = getattr(event, "chat", None)
    return str(getattr(chat, "title", "") or "")


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return utcnow()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dedupe_key(chat_id: int, message_id: int, sender_id: int | None, date: Any, text: str) -> str:
    """The same key for every fleet account that sees one message, in every worker process.
    Supergroup message ids are shared; basic-group ids differ per account, so those use
    sender, time and a digest of the text (stable across processes, unlike ``hash``)."""
    if str(chat_id).startswith("-100"):
        return f"{chat_id}:{message_id}"
    stamp = int(date.timestamp()) if isinstance(date, datetime) else 0
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{chat_id}:{sender_id}:{stamp}:{digest}"


def _join_key(chat_id: int, user_id: int, action: Any) -> str:
    """One key per join as every fleet account sees it (a later re-join is a new one)."""
    date = getattr(action, "date", None)
    stamp = int(date.timestamp()) if isinstance(date, datetime) else 0
    return f"join:{chat_id}:{user_id}:{stamp}"
