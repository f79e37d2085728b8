"""Console sessions: a browser signed in to the web console by a server-side session.

The cookie holds a 256-bit random token (``secrets.token_urlsafe(32)``), shown once; only
its SHA-256 is stored (``console_session``), so the table alone signs nobody in. Signing in
is the API login's password check, throttle and audit (``check_login``, with ``via:
console`` in the audit record). A session ends at the first of: logout or revocation, its
idle timeout after the last request, its absolute end after sign-in, its user disabled or
gone, or its user's ``token_epoch`` moving (a disable or password change, as for JWTs).

Each session has a CSRF token derived from its id under the JWT secret: stable for the
session, different for every other, never stored. Services flush; the unit of work commits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth._refusals import denied
from tgfleet.auth.authentication import TOKEN_TOUCH_INTERVAL, check_login
from tgfleet.auth.exceptions import ConsoleSessionNotFound, InvalidToken
from tgfleet.auth.repository import ConsoleSessionRepository, UserRepository
from tgfleet.auth.roles import role_permissions
from tgfleet.auth.schemas import Principal
from tgfleet.auth.security import Security
from tgfleet.auth.tokens import token_digest
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.models import ConsoleSession as ConsoleSessionRow
from tgfleet.models import User

log = get_logger(__name__)

#: Revoked and expired sessions are kept this long (the user's list, forensics), then pruned.
PRUNE_AFTER = timedelta(days=1)
USER_AGENT_LENGTH = 200
IP_LENGTH = 64


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """What a request learns of its console session."""

    id: uuid.UUID
    principal: Principal  # via="console"
    csrf_token: str  # stable for the session; check a form's with verify_csrf
    created_at: datetime
    expires_at: datetime  # the absolute end
    idle_expires_at: datetime  # last_seen_at + the idle timeout
    language: str | None = None  # the user's chosen console language (None: the browser's)


@dataclass(frozen=True, slots=True)
class OpenedConsoleSession:
    token: str  # the raw cookie value, shown once (never stored, logged or audited)
    session: ConsoleSession


@dataclass(frozen=True, slots=True)
class ConsoleSessionInfo:
    """One of a user's open sessions, as their session list shows it (no token, no hash)."""

    id: uuid.UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None


async def open_console_session(
    session: AsyncSession,
    security: Security,
    *,
    username: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
    request_id: str | None,
) -> OpenedConsoleSession:
    """Sign in to the console: the API login's checks, throttle and audit (``auth.login``
    with ``via: console``), then a new session (and the sessions ended over a day ago
    pruned). Raises ``LoginThrottled``, ``InvalidCredentials`` or ``UserDisabled`` as the
    API login does."""
    user, now = await check_login(
        session,
        security,
        username=username,
        password=password,
        ip=ip,
        request_id=request_id,
        via="console",
    )
    sessions = ConsoleSessionRepository(session)
    await sessions.delete_ended_before(now - PRUNE_AFTER)  # a sign-in keeps the table small
    token = secrets.token_urlsafe(32)
    row = ConsoleSessionRow(
        token_hash=token_digest(token),
        user_id=user.id,
        token_epoch=user.token_epoch,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=security.console_max_seconds),
        ip=ip[:IP_LENGTH] if ip else None,
        user_agent=user_agent[:USER_AGENT_LENGTH] if user_agent else None,
    )
    await sessions.add(row)
    log.info("auth.console_session.opened", username=user.username, session_id=str(row.id))
    return OpenedConsoleSession(token=token, session=_resolved(security, row, user))


async def console_session(session: AsyncSession, security: Security, token: str) -> ConsoleSession:
    """The open session whose cookie holds ``token``, or ``InvalidToken`` (counted in
    ``tgfleet_auth_denied_total``). Touches ``last_seen_at`` at most once a minute."""
    row = await ConsoleSessionRepository(session).by_hash(token_digest(token)) if token else None
    if row is None or row.revoked_at is not None:
        raise denied("invalid_token", InvalidToken("the console session is unknown or ended"))
    now = utcnow()
    if row.expires_at <= now:
        raise denied(
            "expired_token",
            InvalidToken("the console session reached its time limit; sign in again"),
        )
    if _idle_end(security, row) <= now:
        raise denied(
            "expired_token",
            InvalidToken("the console session expired after a while unused; sign in again"),
        )
    user = await UserRepository(session).by_id(row.user_id)
    if user is None or user.disabled:
        raise denied(
            "invalid_token" if user is None else "disabled_user",
            InvalidToken("the console session's user is disabled or gone"),
        )
    # The epoch alone: every row has it, and unlike credentials_changed_at it does not
    # depend on two processes' clocks agreeing (skew would refuse a session opened just
    # after a password change elsewhere).
    if row.token_epoch != user.token_epoch:
        raise denied(
            "stale_token",
            InvalidToken(
                "this console session was ended (the user was disabled or the password "
                "changed); sign in again"
            ),
        )
    if now - row.last_seen_at > TOKEN_TOUCH_INTERVAL:
        row.last_seen_at = now
        await session.flush()
    return _resolved(security, row, user)


def verify_csrf(console_session: ConsoleSession, presented: str | None) -> bool:
    """Whether ``presented`` is this session's CSRF token (compared in constant time)."""
    if not presented:
        return False
    return hmac.compare_digest(
        console_session.csrf_token.encode("utf-8"), presented.encode("utf-8")
    )


async def close_console_session(session: AsyncSession, token: str, context: AuditContext) -> None:
    """Log out: end the session whose cookie holds ``token`` (audited ``auth.logout``).
    An unknown or already ended token is no error: there is nothing to end."""
    row = await ConsoleSessionRepository(session).by_hash(token_digest(token)) if token else None
    if row is None or row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    await session.flush()
    await _audit_session(session, context, "auth.logout", row)


async def list_console_sessions(
    session: AsyncSession, user_id: uuid.UUID, *, security: Security | None = None
) -> list[ConsoleSessionInfo]:
    """The user's sessions not revoked nor past their absolute end, oldest first; given
    ``security``, those past their idle timeout are left out too."""
    now = utcnow()
    rows = await ConsoleSessionRepository(session).open_for_user(user_id, now)
    return [
        ConsoleSessionInfo(
            id=row.id,
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            expires_at=row.expires_at,
            ip=row.ip,
            user_agent=row.user_agent,
        )
        for row in rows
        if security is None or _idle_end(security, row) > now
    ]


async def revoke_console_session(
    session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, context: AuditContext
) -> None:
    """End one of the user's own sessions (audited ``auth.console_session.revoke``); the
    next request with its cookie is refused. Another user's session is not found; one
    already ended stays ended (no error, no second record)."""
    row = await ConsoleSessionRepository(session).by_id(session_id)
    if row is None or row.user_id != user_id:
        raise ConsoleSessionNotFound(f"you have no console session with id {session_id}")
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    await session.flush()
    await _audit_session(session, context, "auth.console_session.revoke", row)


async def prune_console_sessions(session: AsyncSession, now: datetime) -> int:
    """Delete the sessions revoked, or past their absolute end, more than a day before
    ``now``; returns how many."""
    return await ConsoleSessionRepository(session).delete_ended_before(now - PRUNE_AFTER)


def _idle_end(security: Security, row: ConsoleSessionRow) -> datetime:
    return row.last_seen_at + timedelta(seconds=security.console_idle_seconds)


def _csrf_token(security: Security, session_id: uuid.UUID) -> str:
    digest = hmac.new(security.signing_key, b"csrf:" + session_id.bytes, hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).decode("ascii")


def _resolved(security: Security, row: ConsoleSessionRow, user: User) -> ConsoleSession:
    return ConsoleSession(
        id=row.id,
        principal=Principal(
            user_id=user.id,
            username=user.username,
            role=user.role.name,
            permissions=role_permissions(user.role),
            via="console",
            token_epoch=user.token_epoch,
        ),
        csrf_token=_csrf_token(security, row.id),
        created_at=row.created_at,
        expires_at=row.expires_at,
        idle_expires_at=_idle_end(security, row),
        language=user.language,
    )


async def _audit_session(
    session: AsyncSession, context: AuditContext, action: str, row: ConsoleSessionRow
) -> None:
    """One audit record ending a console session, naming its user and its id."""
    user = await UserRepository(session).by_id(row.user_id)
    owner = user.username if user is not None else str(row.user_id)
    await audit_service.record(
        session,
        context,
        action=action,
        target=f"user:{owner}",
        details={"via": "console", "console_session_id": str(row.id)},
    )
