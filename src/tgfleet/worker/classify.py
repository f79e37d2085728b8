"""What an exception from a Telegram client means for the account that raised it.

This module is the only place the error table of DESIGN §4 lives. :func:`classify` turns an
exception into a :class:`Classification`; the supervisor decides what to do from its
``error_class`` alone (reconnect, wait, disable a group, quarantine, retire, or retry a few
times), and stores ``reason`` as ``account_status.reason``.

How Telethon 1.45 builds errors shapes the matching below:

- ``rpc_message_to_error`` turns a known RPC name into a generated class
  (``FLOOD_WAIT_5`` -> ``FloodWaitError(seconds=5)``); an unknown name becomes the base class
  for its code (``FloodError``, ``BadRequestError``, ``ServerError``...) with ``.message`` set
  to the name and ``.code`` to the code as sent (``-500`` stays negative).
- Generated classes skip ``RPCError.__init__``, so their ``.message`` and ``.code`` are the
  base class's (``FloodWaitError().message == "FLOOD"``). The RPC name of a generated class
  therefore comes from Telethon's own name-to-class table, read backwards, never from
  ``.message``.
- Some 420 errors carry no seconds: ``FROZEN_METHOD_INVALID`` is a ``FloodError`` subclass
  for an account Telegram froze. Waiting does not help; those are quarantined.
- Connection-level failures are not ``RPCError``: ``AuthKeyNotFound`` when the server
  answers -404 to an unknown key, ``InvalidBufferError`` for other transport codes (-429
  is a transport flood), and builtin ``ConnectionError``/``OSError``/``TimeoutError``.

Callers must re-raise ``CancelledError`` (and any other ``BaseException`` that is not an
``Exception``) themselves: :func:`classify` raises ``TypeError`` for them, because
classifying a cancellation as an error is how a shutdown turns into a retry loop.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from telethon import errors as tg_errors

__all__ = ["Classification", "ErrorClass", "classify"]

MESSAGE_LIMIT: Final = 300


class ErrorClass(StrEnum):
    """What the supervisor does about an error (DESIGN §4)."""

    TRANSIENT = "transient"  # reconnect/retry with backoff, within the retry budget
    WAIT = "wait"  # wait exactly the server's seconds
    GROUP = "group"  # disable this group for this account
    QUARANTINE = "quarantine"  # stop the client, needs an operator, never retried
    RETIRE = "retire"  # the account is gone for good
    UNKNOWN = "unknown"  # a few retries, then `error`


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one exception.

    ``code`` is stable across Telethon versions: the RPC error name without its number
    (``FLOOD_WAIT``, ``SESSION_REVOKED``) or, for other exceptions, the class name
    (``ConnectionError``). ``seconds`` is set for ``WAIT`` only; ``scope`` is ``"account"`` or
    ``"chat"`` for ``WAIT`` and ``"chat"`` for ``GROUP``. ``message`` is safe to store and
    show: Telethon's text names the request type, never its arguments.
    """

    error_class: ErrorClass
    code: str
    seconds: int | None
    scope: str | None
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class _Rule:
    error_class: ErrorClass
    reason: str
    scope: str | None = None


_ACCOUNT_WAIT: Final = _Rule(ErrorClass.WAIT, "flood_wait", "account")

# The table, by Telethon class. Each class's RPC name is looked up in Telethon's own
# table below, so a generically built error with the same name matches the same rule.
_RULES: Final[dict[Any, _Rule]] = {
    # wait: the server says how long; FLOOD_TEST_PHONE_WAIT is the test-DC flavour.
    tg_errors.FloodWaitError: _ACCOUNT_WAIT,
    tg_errors.FloodPremiumWaitError: _ACCOUNT_WAIT,
    tg_errors.FloodTestPhoneWaitError: _ACCOUNT_WAIT,
    tg_errors.SlowModeWaitError: _Rule(ErrorClass.WAIT, "slow_mode", "chat"),
    # group: the account may not write to this one chat; the account itself is healthy.
    tg_errors.ChatWriteForbiddenError: _Rule(ErrorClass.GROUP, "write_forbidden", "chat"),
    tg_errors.ChannelPrivateError: _Rule(ErrorClass.GROUP, "channel_private", "chat"),
    tg_errors.UserBannedInChannelError: _Rule(ErrorClass.GROUP, "banned_in_group", "chat"),
    tg_errors.ChatAdminRequiredError: _Rule(ErrorClass.GROUP, "admin_required", "chat"),
    # Also per chat: the chat is restricted, or its permissions forbid plain text. Retrying
    # will not help and nothing is wrong with the account. CHANNEL_INVALID stays `unknown`:
    # it means we passed a wrong or stale peer, a bug to surface rather than a group to mute.
    tg_errors.ChatRestrictedError: _Rule(ErrorClass.GROUP, "chat_restricted", "chat"),
    tg_errors.ChatSendPlainForbiddenError: _Rule(ErrorClass.GROUP, "send_plain_forbidden", "chat"),
    # quarantine: the session is dead or the account is limited; an operator must look.
    tg_errors.AuthKeyUnregisteredError: _Rule(ErrorClass.QUARANTINE, "auth_key_unregistered"),
    tg_errors.AuthKeyInvalidError: _Rule(ErrorClass.QUARANTINE, "auth_key_invalid"),
    tg_errors.SessionRevokedError: _Rule(ErrorClass.QUARANTINE, "session_revoked"),
    tg_errors.SessionExpiredError: _Rule(ErrorClass.QUARANTINE, "session_expired"),
    tg_errors.AuthKeyDuplicatedError: _Rule(ErrorClass.QUARANTINE, "auth_key_duplicated"),
    tg_errors.SessionPasswordNeededError: _Rule(ErrorClass.QUARANTINE, "password_needed"),
    tg_errors.PeerFloodError: _Rule(ErrorClass.QUARANTINE, "peer_flood"),
    tg_errors.UserRestrictedError: _Rule(ErrorClass.QUARANTINE, "restricted"),
    # A 420 without seconds; and the 400 a frozen account gets for chats it can't reach.
    tg_errors.FrozenMethodInvalidError: _Rule(ErrorClass.QUARANTINE, "frozen"),
    tg_errors.FrozenParticipantMissingError: _Rule(ErrorClass.QUARANTINE, "frozen"),
    # retire
    tg_errors.UserDeactivatedError: _Rule(ErrorClass.RETIRE, "deactivated"),
    tg_errors.UserDeactivatedBanError: _Rule(ErrorClass.RETIRE, "banned"),
    tg_errors.PhoneNumberBannedError: _Rule(ErrorClass.RETIRE, "phone_banned"),
    # transient, named for their reason; other 5xx fall through to the code rules below.
    tg_errors.RpcCallFailError: _Rule(ErrorClass.TRANSIENT, "server"),
}


def _rpc_names() -> dict[Any, str]:
    """Telethon's name -> class tables, backwards: a generated class's RPC name."""
    names: dict[Any, str] = {}
    for name, cls in tg_errors.rpc_errors_dict.items():
        # Telethon looks names up upper-cased; "Timeout" and "TIMEOUT" are one class.
        names.setdefault(cls, _strip_numbers(name.upper()))
    for pattern, cls in tg_errors.rpc_errors_re:
        names.setdefault(cls, _strip_numbers(pattern.replace("(\\d+)", "0")))
    return names


def _strip_numbers(name: str) -> str:
    return _NUMBER.sub("", name)


# A number inside an RPC name: "FLOOD_WAIT_5", "FILE_PART_3_MISSING", "..._WAIT_5MIN".
_NUMBER: Final = re.compile(r"_\d+(?=_|$)|(?<=_)\d+")
_RPC_NAMES: Final = _rpc_names()
_RULES_BY_NAME: Final = {_RPC_NAMES[cls]: rule for cls, rule in _RULES.items()}


def classify(exc: BaseException) -> Classification:
    """Classify ``exc``; raises ``TypeError`` for a ``CancelledError`` or other non-``Exception``.

    The caller re-raises those before calling: ``except asyncio.CancelledError: raise``.
    """
    if not isinstance(exc, Exception):
        kind = "CancelledError" if isinstance(exc, asyncio.CancelledError) else "BaseException"
        raise TypeError(f"{kind} {type(exc).__name__} is never classified; re-raise it")
    if isinstance(exc, tg_errors.RPCError):
        return _classify_rpc(exc)
    return _classify_local(exc)


def _classify_rpc(exc: Any) -> Classification:
    code, seconds = _rpc_name_and_number(exc)
    rule = _RULES_BY_NAME.get(code)
    if rule is None:
        rule = _rule_for_status(exc, seconds)
    if rule.error_class is ErrorClass.WAIT:
        seconds = exc.seconds if isinstance(getattr(exc, "seconds", None), int) else seconds
    else:
        seconds = None
    return Classification(rule.error_class, code, seconds, rule.scope, rule.reason, _text(exc))


def _rpc_name_and_number(exc: Any) -> tuple[str, int | None]:
    """The RPC name without its number, and that number (seconds, DC...) if any."""
    for cls in type(exc).__mro__:
        name = _RPC_NAMES.get(cls)
        if name is not None:
            return name, getattr(exc, "seconds", None)
    # Built generically (a name this Telethon does not know): the name is in `.message`,
    # case as sent ("Timeout", "No workers running").
    raw = str(exc.message or "UNKNOWN")
    name = re.sub(r"[^A-Z0-9]+", "_", raw.upper()).strip("_")
    number = _NUMBER.search(name)
    return _strip_numbers(name), int(number.group().lstrip("_")) if number else None


def _rule_for_status(exc: Any, seconds: int | None) -> _Rule:
    """Rules for an RPC name not in the table, by its status code (negative codes as Telethon)."""
    status = abs(exc.code) if isinstance(exc.code, int) else None
    if status == 420:
        # A flood error that names its seconds (a new `*_WAIT_<n>`) is a wait; one that
        # names none gives nothing to wait for, and Telegram uses that for frozen accounts.
        if seconds is not None:
            return _ACCOUNT_WAIT
        return _Rule(ErrorClass.QUARANTINE, "flood_without_wait")
    if status == 503:  # TimedOutError: the server gave up waiting on an internal worker
        return _Rule(ErrorClass.TRANSIENT, "timeout")
    if status is not None and 500 <= status < 600:
        return _Rule(ErrorClass.TRANSIENT, "server")
    if status == 401:
        return _Rule(ErrorClass.QUARANTINE, "unauthorized")
    return _Rule(ErrorClass.UNKNOWN, "unknown")


def _classify_local(exc: Exception) -> Classification:
    """Exceptions raised on our side of the wire: transport, sockets, timeouts."""
    code = type(exc).__name__
    if isinstance(exc, tg_errors.AuthKeyNotFound):
        # The server answered -404: it does not know this auth key. Telethon stops
        # reconnecting on it; a new login is needed, so it is not transient.
        return _local(exc, ErrorClass.QUARANTINE, "auth_key_unregistered")
    if isinstance(exc, tg_errors.InvalidBufferError):
        if exc.code == 404:  # the same -404, where Telethon did not convert it
            return _local(exc, ErrorClass.QUARANTINE, "auth_key_unregistered")
        if exc.code == 429:  # transport-level flood: too many connections or requests
            return _local(exc, ErrorClass.TRANSIENT, "transport_flood")
        return _local(exc, ErrorClass.TRANSIENT, "network")
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is this class since 3.11
        return _local(exc, ErrorClass.TRANSIENT, "timeout")
    if isinstance(exc, _LOCAL_FILE_ERRORS):
        # OSErrors about a path (session file, certificate, socket path) will not heal by
        # reconnecting; they go through the few `unknown` retries and end in `error`.
        return _local(exc, ErrorClass.UNKNOWN, "unknown")
    if isinstance(exc, (OSError, asyncio.IncompleteReadError, tg_errors.InvalidChecksumError)):
        # IncompleteReadError (an EOFError) is the server closing mid-frame; a bad checksum
        # is a corrupted frame. Both are handled by reconnecting.
        return _local(exc, ErrorClass.TRANSIENT, "network")
    return Classification(ErrorClass.UNKNOWN, code, None, None, "unknown", code)


_LOCAL_FILE_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def _local(exc: Exception, error_class: ErrorClass, reason: str) -> Classification:
    return Classification(error_class, type(exc).__name__, None, None, reason, _text(exc))


_URL_USERINFO: Final = re.compile(r"(?<=://)[^/@\s]+@")


def _text(exc: BaseException) -> str:
    """Exception text safe to store: no URL credentials (proxies), at most 300 chars.

    Telethon's RPC texts name the request class only. Socket errors name host and port. An
    exception we do not recognise is represented by its class name alone (see
    :func:`_classify_local`), since its text may hold anything.
    """
    text = " ".join(_URL_USERINFO.sub("***@", str(exc)).split()) or type(exc).__name__
    if len(text) > MESSAGE_LIMIT:
        text = text[: MESSAGE_LIMIT - 1] + "…"
    return text
