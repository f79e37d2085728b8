"""Refusals counted by their reason in ``tgfleet_auth_denied_total``."""

from __future__ import annotations

from typing import Literal, TypeVar

from tgfleet import metrics

_Refusal = TypeVar("_Refusal", bound=Exception)

#: Why a request was refused: the ``reason`` of ``tgfleet_auth_denied_total``.
DeniedReason = Literal[
    "missing_credentials",  # no bearer credential at all
    "invalid_token",  # an unknown or revoked API token, a JWT that does not verify, a user gone
    "expired_token",
    "stale_token",  # a JWT issued before its user was disabled or their password changed
    "disabled_user",
    "forbidden",  # authenticated, without the permission (or not as a logged-in user)
    "wrong_password",  # the current password given to change it
    "csrf",  # a console form without its session's CSRF token, or from another site
]


def count_denied(reason: DeniedReason) -> None:
    """Count one request refused by authentication or authorisation."""
    metrics.AUTH_DENIED.labels(reason).inc()


def denied(reason: DeniedReason, error: _Refusal) -> _Refusal:
    """``error``, counted as a refusal for ``reason``: ``raise denied(reason, error)``."""
    count_denied(reason)
    return error
