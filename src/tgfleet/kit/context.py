"""Per-request context that logging and auditing read (set by the HTTP middleware)."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("tgfleet_request_id", default=None)
