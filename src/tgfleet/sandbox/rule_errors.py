"""What the running world refuses, each error with the answer Telegram gives for it."""

from __future__ import annotations

from typing import ClassVar

from tgfleet.exceptions import AppError


class SandboxRuleError(AppError):
    """A request the world refuses; ``rpc_code``/``rpc_message`` are Telegram's answer."""

    rpc_code: ClassVar[int] = 400
    rpc_message: ClassVar[str] = "BAD_REQUEST"

    @property
    def rpc_error(self) -> tuple[int, str]:
        """The (code, message) pair for the server's ``RpcError``."""
        return self.rpc_code, self.rpc_message


class PeerInvalid(SandboxRuleError):
    rpc_message = "PEER_ID_INVALID"


class UserInvalid(SandboxRuleError):
    rpc_message = "USER_ID_INVALID"


class ChatForbidden(SandboxRuleError):
    """Not a member of the basic group (Telegram answers CHAT_ID_INVALID / PEER_ID_INVALID)."""

    rpc_message = "CHAT_ID_INVALID"


class ChannelPrivate(SandboxRuleError):
    """Not a member of the supergroup."""

    rpc_message = "CHANNEL_PRIVATE"


class ChatWriteForbidden(SandboxRuleError):
    status_code = 403
    rpc_code = 403
    rpc_message = "CHAT_WRITE_FORBIDDEN"


class MessageEmpty(SandboxRuleError):
    rpc_message = "MESSAGE_EMPTY"


class MessageTooLong(SandboxRuleError):
    rpc_message = "MESSAGE_TOO_LONG"


class ReplyInvalid(SandboxRuleError):
    rpc_message = "REPLY_MESSAGE_ID_INVALID"


class UserAlreadyParticipant(SandboxRuleError):
    rpc_message = "USER_ALREADY_PARTICIPANT"


class SlowmodeWait(SandboxRuleError):
    status_code = 429
    rpc_code = 420

    def __init__(self, seconds: int) -> None:
        super().__init__(f"slow mode: wait {seconds} s")
        self.seconds = seconds

    @property
    def rpc_error(self) -> tuple[int, str]:
        return self.rpc_code, f"SLOWMODE_WAIT_{self.seconds}"


class DifferenceTooLong(SandboxRuleError):
    """The asked pts is older than the backlog; the server answers ``differenceTooLong``."""

    rpc_message = "PERSISTENT_TIMESTAMP_OUTDATED"

    def __init__(self, message: str, *, current_pts: int) -> None:
        super().__init__(message)
        self.current_pts = current_pts
