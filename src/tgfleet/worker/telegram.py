"""The Telegram adapter: a Telethon client built from a vault record, in memory only.

Telethon's own retry layers are turned down so retries happen at one layer (ours):
``connection_retries=0`` (one connect attempt per ``connect()``), ``request_retries=0``
(one attempt per request), ``auto_reconnect=False`` (a dropped connection ends the sender;
the runner reconnects with its backoff and budget), ``flood_sleep_threshold=0`` (every flood
wait is raised to the runner, which honours it visibly in ``flood_wait``), and
``raise_last_call_error=True`` (the real error, not Telethon's "unsuccessful N time(s)").
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, replace

from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession
from telethon.tl import types

from tgfleet import __version__
from tgfleet.vault.formats import CanonicalSession

# Telethon logs every connect at INFO; a fleet of thousands would drown the log. Its
# warnings and errors still come through (set this logger to DEBUG to trace a client).
_TELETHON_LOG = logging.getLogger("tgfleet.telethon")
_TELETHON_LOG.setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    api_id: int
    api_hash: str
    connect_timeout: float


def build_client(record: CanonicalSession, options: ClientOptions) -> TelegramClient:
    """A client for ``record`` whose session lives in memory (never on disk)."""
    session = MemorySession()
    session.set_dc(record.dc_id, record.address, record.port)
    session.auth_key = AuthKey(record.auth_key)
    return TelegramClient(
        session,
        options.api_id,
        options.api_hash,
        timeout=max(1, round(options.connect_timeout)),  # Telethon's: connecting only
        request_retries=0,
        connection_retries=0,
        retry_delay=0,
        auto_reconnect=False,
        flood_sleep_threshold=0,
        raise_last_call_error=True,
        catch_up=False,
        device_model="tgfleet",
        system_version="tgfleet",
        app_version=__version__,
        base_logger=_TELETHON_LOG,
    )


def changed_record(client: TelegramClient, record: CanonicalSession) -> CanonicalSession | None:
    """What the client's session now holds, if it differs from ``record`` (a DC switch or a
    new auth key); ``None`` when nothing changed or the session lost its key."""
    session = client.session
    auth_key = session.auth_key
    if auth_key is None or auth_key.key is None:
        return None
    dc_id, address, port = session.dc_id, session.server_address, session.port
    if (dc_id, address, port, auth_key.key) == (
        record.dc_id,
        record.address,
        record.port,
        record.auth_key,
    ):
        return None
    return replace(record, dc_id=dc_id, address=address, port=port, auth_key=auth_key.key)


def reply_random_id(account_id: uuid.UUID, message_key: str) -> int:
    """The random_id of one account's reply to one message (a positive signed 64-bit
    integer), the same in every process: Telegram drops a message whose sender already
    sent that random_id, so a reply re-sent after a flood wait, a reconnect, a hand-over or
    a crash between claim and send is delivered at most once."""
    digest = hashlib.blake2b(
        f"{account_id}:{message_key}".encode("utf-8", "surrogatepass"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") >> 1 or 1


def sent_message_id(result: object, random_id: int) -> int | None:
    """The id of the message a ``messages.sendMessage`` created, from its Updates."""
    if isinstance(result, types.UpdateShortSentMessage):
        return int(result.id)
    updates = getattr(result, "updates", None) or []
    for update in updates:
        if isinstance(update, types.UpdateMessageID) and update.random_id == random_id:
            return int(update.id)
    for update in updates:
        message = getattr(update, "message", None)
        if isinstance(message, types.Message) and message.out:
            return int(message.id)
    return None
