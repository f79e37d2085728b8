"""The error table of DESIGN §4, case by case, on exceptions built the way Telethon builds them."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from telethon import errors
from telethon.tl import functions, types

from tgfleet.worker.classify import Classification, ErrorClass, classify

SECRET_TEXT = "hunter2-message-body"
# A real request, as Telethon attaches it to every RPC error; its argument must never leak.
REQUEST = functions.messages.SendMessageRequest(peer=types.InputPeerSelf(), message=SECRET_TEXT)

T = ErrorClass.TRANSIENT
W = ErrorClass.WAIT
G = ErrorClass.GROUP
Q = ErrorClass.QUARANTINE
R = ErrorClass.RETIRE
U = ErrorClass.UNKNOWN


def rpc(code: int, message: str) -> Any:
    """The exception Telethon raises when the server answers ``rpc_error code message``."""
    return errors.rpc_message_to_error(
        types.RpcError(error_code=code, error_message=message), REQUEST
    )


def transport(code: int) -> Any:
    """The error Telethon's transport raises for a 4-byte negative status (-404, -429)."""
    return errors.InvalidBufferError(struct.pack("<i", -code))


# (exception, class, code, seconds, scope, reason)
TABLE: list[Any] = [
    # wait
    pytest.param(rpc(420, "FLOOD_WAIT_5"), W, "FLOOD_WAIT", 5, "account", "flood_wait"),
    pytest.param(rpc(420, "SLOWMODE_WAIT_7"), W, "SLOWMODE_WAIT", 7, "chat", "slow_mode"),
    pytest.param(
        rpc(420, "FLOOD_PREMIUM_WAIT_3"), W, "FLOOD_PREMIUM_WAIT", 3, "account", "flood_wait"
    ),
    pytest.param(
        rpc(420, "FLOOD_TEST_PHONE_WAIT_9"), W, "FLOOD_TEST_PHONE_WAIT", 9, "account", "flood_wait"
    ),
    pytest.param(
        rpc(420, "FLOOD_SOMETHING_NEW_WAIT_12"),
        W,
        "FLOOD_SOMETHING_NEW_WAIT",
        12,
        "account",
        "flood_wait",
        id="unknown-420-with-seconds",
    ),
    # quarantine: a 420 without seconds
    pytest.param(
        rpc(420, "FROZEN_METHOD_INVALID"), Q, "FROZEN_METHOD_INVALID", None, None, "frozen"
    ),
    pytest.param(rpc(420, "SOME_NEW_FLOOD"), Q, "SOME_NEW_FLOOD", None, None, "flood_without_wait"),
    # quarantine: dead session or limited account
    pytest.param(rpc(401, "SESSION_REVOKED"), Q, "SESSION_REVOKED", None, None, "session_revoked"),
    pytest.param(rpc(401, "SESSION_EXPIRED"), Q, "SESSION_EXPIRED", None, None, "session_expired"),
    pytest.param(
        rpc(401, "AUTH_KEY_UNREGISTERED"),
        Q,
        "AUTH_KEY_UNREGISTERED",
        None,
        None,
        "auth_key_unregistered",
    ),
    pytest.param(
        rpc(401, "AUTH_KEY_INVALID"), Q, "AUTH_KEY_INVALID", None, None, "auth_key_invalid"
    ),
    pytest.param(
        rpc(406, "AUTH_KEY_DUPLICATED"), Q, "AUTH_KEY_DUPLICATED", None, None, "auth_key_duplicated"
    ),
    pytest.param(
        rpc(401, "SESSION_PASSWORD_NEEDED"),
        Q,
        "SESSION_PASSWORD_NEEDED",
        None,
        None,
        "password_needed",
    ),
    pytest.param(rpc(400, "PEER_FLOOD"), Q, "PEER_FLOOD", None, None, "peer_flood"),
    pytest.param(rpc(403, "USER_RESTRICTED"), Q, "USER_RESTRICTED", None, None, "restricted"),
    pytest.param(
        rpc(400, "FROZEN_PARTICIPANT_MISSING"),
        Q,
        "FROZEN_PARTICIPANT_MISSING",
        None,
        None,
        "frozen",
    ),
    pytest.param(
        rpc(401, "SOME_NEW_AUTH_PROBLEM"),
        Q,
        "SOME_NEW_AUTH_PROBLEM",
        None,
        None,
        "unauthorized",
        id="unknown-401",
    ),
    # retire
    pytest.param(rpc(401, "USER_DEACTIVATED"), R, "USER_DEACTIVATED", None, None, "deactivated"),
    pytest.param(rpc(401, "USER_DEACTIVATED_BAN"), R, "USER_DEACTIVATED_BAN", None, None, "banned"),
    pytest.param(
        rpc(400, "PHONE_NUMBER_BANNED"), R, "PHONE_NUMBER_BANNED", None, None, "phone_banned"
    ),
    # group
    pytest.param(
        rpc(403, "CHAT_WRITE_FORBIDDEN"), G, "CHAT_WRITE_FORBIDDEN", None, "chat", "write_forbidden"
    ),
    pytest.param(
        rpc(400, "CHANNEL_PRIVATE"), G, "CHANNEL_PRIVATE", None, "chat", "channel_private"
    ),
    pytest.param(
        rpc(400, "USER_BANNED_IN_CHANNEL"),
        G,
        "USER_BANNED_IN_CHANNEL",
        None,
        "chat",
        "banned_in_group",
    ),
    pytest.param(
        rpc(400, "CHAT_ADMIN_REQUIRED"), G, "CHAT_ADMIN_REQUIRED", None, "chat", "admin_required"
    ),
    pytest.param(
        rpc(400, "CHAT_RESTRICTED"), G, "CHAT_RESTRICTED", None, "chat", "chat_restricted"
    ),
    pytest.param(
        rpc(403, "CHAT_SEND_PLAIN_FORBIDDEN"),
        G,
        "CHAT_SEND_PLAIN_FORBIDDEN",
        None,
        "chat",
        "send_plain_forbidden",
    ),
    # transient
    pytest.param(rpc(500, "INTERNAL"), T, "INTERNAL", None, None, "server"),
    pytest.param(rpc(500, "RPC_CALL_FAIL"), T, "RPC_CALL_FAIL", None, None, "server"),
    pytest.param(rpc(-500, "No workers running"), T, "NO_WORKERS_RUNNING", None, None, "server"),
    pytest.param(rpc(-503, "Timeout"), T, "TIMEOUT", None, None, "timeout"),
    pytest.param(
        ConnectionError("Connection to Telegram failed 5 time(s)"),
        T,
        "ConnectionError",
        None,
        None,
        "network",
    ),
    pytest.param(
        ConnectionRefusedError(111, "Connect call failed"),
        T,
        "ConnectionRefusedError",
        None,
        None,
        "network",
    ),
    pytest.param(OSError(101, "Network is unreachable"), T, "OSError", None, None, "network"),
    pytest.param(asyncio.TimeoutError(), T, "TimeoutError", None, None, "timeout"),  # noqa: UP041 (what asyncio.wait_for raises; the builtin since 3.11)
    pytest.param(
        asyncio.IncompleteReadError(b"", 8), T, "IncompleteReadError", None, None, "network"
    ),
    pytest.param(transport(429), T, "InvalidBufferError", None, None, "transport_flood"),
    # the server does not know the auth key
    pytest.param(
        errors.AuthKeyNotFound(), Q, "AuthKeyNotFound", None, None, "auth_key_unregistered"
    ),
    pytest.param(transport(404), Q, "InvalidBufferError", None, None, "auth_key_unregistered"),
    # unknown
    pytest.param(
        rpc(400, "SOME_NEW_BAD_REQUEST"), U, "SOME_NEW_BAD_REQUEST", None, None, "unknown"
    ),
    pytest.param(rpc(400, "CHANNEL_INVALID"), U, "CHANNEL_INVALID", None, None, "unknown"),
    pytest.param(
        ValueError("Request was unsuccessful 5 time(s)"), U, "ValueError", None, None, "unknown"
    ),
    pytest.param(
        FileNotFoundError(2, "No such file", "a.session"),
        U,
        "FileNotFoundError",
        None,
        None,
        "unknown",
    ),
]


class TestClassify:
    @pytest.mark.parametrize(("exc", "error_class", "code", "seconds", "scope", "reason"), TABLE)
    def test_table(
        self,
        exc: BaseException,
        error_class: ErrorClass,
        code: str,
        seconds: int | None,
        scope: str | None,
        reason: str,
    ) -> None:
        """Each exception lands in its class with the stable code, seconds, scope and reason."""
        result = classify(exc)

        assert (result.error_class, result.code, result.seconds, result.scope, result.reason) == (
            error_class,
            code,
            seconds,
            scope,
            reason,
        )
        assert SECRET_TEXT not in result.message
        assert 0 < len(result.message) <= 300

    def test_frozen_flood_error_really_has_no_seconds(self) -> None:
        """FROZEN_METHOD_INVALID is a FloodError without ``.seconds``: nothing to wait for."""
        exc = rpc(420, "FROZEN_METHOD_INVALID")

        assert isinstance(exc, errors.FloodError)
        assert not hasattr(exc, "seconds")
        assert classify(exc).error_class is ErrorClass.QUARANTINE

    def test_generated_class_message_is_not_the_rpc_name(self) -> None:
        """Telethon's generated errors report the base name in ``.message``; the code does not."""
        exc = rpc(420, "FLOOD_WAIT_5")

        assert exc.message == "FLOOD"
        assert classify(exc).code == "FLOOD_WAIT"


class TestGenericallyBuiltErrors:
    """RPC errors built from a name and a code, not through Telethon's class table."""

    def test_known_name_matches_its_rule_and_reads_seconds_from_the_name(self) -> None:
        """An ``RPCError`` named FLOOD_WAIT_30 is the same wait as ``FloodWaitError(30)``."""
        result = classify(errors.RPCError(REQUEST, "FLOOD_WAIT_30", 420))

        assert (result.error_class, result.code, result.seconds, result.scope) == (
            ErrorClass.WAIT,
            "FLOOD_WAIT",
            30,
            "account",
        )

    def test_frozen_name_on_a_base_flood_error_is_quarantined(self) -> None:
        """An older Telethon raised FROZEN_METHOD_INVALID as a bare ``FloodError``."""
        result = classify(errors.FloodError(REQUEST, "FROZEN_METHOD_INVALID", 420))

        assert (result.error_class, result.code, result.reason) == (
            ErrorClass.QUARANTINE,
            "FROZEN_METHOD_INVALID",
            "frozen",
        )

    def test_session_revoked_by_name(self) -> None:
        """A 401 named SESSION_REVOKED gets its specific reason, not just ``unauthorized``."""
        result = classify(errors.UnauthorizedError(REQUEST, "SESSION_REVOKED", 401))

        assert (result.error_class, result.reason) == (ErrorClass.QUARANTINE, "session_revoked")


class TestNeverClassified:
    def test_cancelled_error_raises_type_error(self) -> None:
        """A cancellation is re-raised by the caller, never turned into a verdict."""
        with pytest.raises(TypeError, match="CancelledError"):
            classify(asyncio.CancelledError())

    def test_keyboard_interrupt_raises_type_error(self) -> None:
        """Other ``BaseException``s that are not ``Exception`` are refused the same way."""
        with pytest.raises(TypeError, match="KeyboardInterrupt"):
            classify(KeyboardInterrupt())


class TestMessage:
    def test_proxy_credentials_are_removed(self) -> None:
        """A socket error naming a proxy URL keeps the host but loses user and password."""
        exc = ConnectionError("proxy socks5://fleet:hunter2@10.0.0.7:1080 refused")

        message = classify(exc).message

        assert "hunter2" not in message
        assert "fleet" not in message
        assert "10.0.0.7:1080" in message

    def test_long_text_is_truncated_to_300(self) -> None:
        """Messages fit the status column: at most 300 characters."""
        message = classify(OSError("x" * 1000)).message

        assert len(message) == 300
        assert message.endswith("…")

    def test_unknown_exception_text_is_not_kept(self) -> None:
        """An exception we do not recognise may carry anything; only its class name is kept."""
        result = classify(ValueError(f"bad payload {SECRET_TEXT}"))

        assert result.message == "ValueError"

    def test_rpc_text_names_the_request_type(self) -> None:
        """Telethon's text names the request class, which is useful and safe."""
        result = classify(rpc(403, "CHAT_WRITE_FORBIDDEN"))

        assert result.message == "You can't write in this chat (caused by SendMessageRequest)"

    def test_classification_is_immutable(self) -> None:
        """A verdict is a value: it cannot be changed after the fact."""
        result = classify(ConnectionError())

        assert isinstance(result, Classification)
        with pytest.raises(AttributeError):
            result.reason = "other"  # type: ignore[misc]
