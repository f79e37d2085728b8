"""The one error base. Every expected failure is an ``AppError`` with a status and a code.

The HTTP layer renders them as ``{"error": code, "detail": message}``; the CLI prints the
message and exits non-zero. Domains subclass these in their own ``exceptions.py``.
"""

from __future__ import annotations

from typing import ClassVar


class AppError(Exception):
    """An expected failure that a user can act on."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    #: When True the unit of work commits before the error reaches the client (a failed
    #: login must still record its audit entry and throttle counter).
    keeps_changes: ClassVar[bool] = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class ConfigError(AppError):
    status_code = 500
    code = "config_error"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class InvalidInput(AppError):
    status_code = 400
    code = "invalid_input"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "authentication required") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "unavailable"
