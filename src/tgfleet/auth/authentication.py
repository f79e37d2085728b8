"""Signing in and being recognised: the password check with its throttle (shared by the
API's JWT login and the console's sessions), and resolving a bearer credential (a JWT or an
API token) to a principal.

A failed login counts against the username and the client address; past the threshold
each is blocked for a growing delay. Every login, failed or not, is audited in the caller's
unit of work; services flush, the unit of work commits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import metrics
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth._refusals import count_denied, denied
from tgfleet.auth.exceptions import InvalidCredentials, InvalidToken, LoginThrottled, UserDisabled
from tgfleet.auth.permissions import parse_permissions
from tgfleet.auth.repository import ApiTokenRepository, ThrottleRepository, UserRepository
from tgfleet.auth.roles import role_permissions
from tgfleet.auth.schemas import USERNAME_PATTERN, Principal, normalise_username
from tgfleet.auth.security import Security
from tgfleet.auth.tokens import is_api_token, token_digest
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.models import User

#: Its lines keep the logger they had before the service was split.
log = get_logger("tgfleet.auth.service")

TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int


async def login(
    session: AsyncSession,
    security: Security,
    *,
    username: str,
    password: str,
    ip: str | None,
    request_id: str | None,
) -> IssuedToken:
    """Check a username and password (``check_login``) and issue a JWT."""
    user, now = await check_login(
        session, security, username=username, password=password, ip=ip, request_id=request_id
    )
    return IssuedToken(
        access_token=security.jwt.issue(user.id, user.token_epoch, now=now),
        expires_in=security.jwt.ttl_seconds,
    )


async def check_login(
    session: AsyncSession,
    security: Security,
    *,
    username: str,
    password: str,
    ip: str | None,
    request_id: str | None,
    via: str | None = None,
) -> tuple[User, datetime]:
    """Check a username and password; return the user and the moment of the login.

    The one password check of every sign-in (the API's JWT login, the console's session):
    failures count against the username and the client address, whichever way they came;
    past the threshold each key is blocked for a growing delay (429 with Retry-After). A
    success clears the counters of that username and that address only. Every attempt is
    audited as ``auth.login``, with ``via`` in its details when given.
    """
    name = normalise_username(username)[:150]
    user_key, ip_key = f"user:{name}", f"ip:{ip or 'unknown'}"
    context = AuditContext(actor=f"anonymous:{name}", ip=ip, request_id=request_id)
    throttle = ThrottleRepository(session)
    now = utcnow()

    blocked = [
        moment for moment in await throttle.blocked_until([user_key, ip_key]) if moment > now
    ]
    if blocked:
        retry_after = max(1, math.ceil((max(blocked) - now).total_seconds()))
        await _audit_login(session, context, name, "failure", "throttled", via)
        log.warning("auth.login_throttled", username=name, ip=ip, retry_after=retry_after)
        metrics.LOGINS.labels("throttled").inc()
        metrics.LOGIN_THROTTLES.inc()
        raise LoginThrottled(retry_after)

    users = UserRepository(session)
    user = await users.by_username(name) if USERNAME_PATTERN.fullmatch(name) else None
    matched = await security.passwords.verify(user.password_hash if user else None, password)
    if user is None or not matched:
        reason = "unknown_user" if user is None else "bad_password"
        window_start = now - timedelta(seconds=security.throttle_window_seconds)
        await throttle.forget_older_than(window_start)
        for key in (user_key, ip_key):
            failures = await throttle.add_failure(key, now, window_start)
            delay = security.throttle_delay(failures)
            if delay > 0:
                await throttle.block(key, now + timedelta(seconds=delay))
        await _audit_login(session, context, name, "failure", reason, via)
        log.info("auth.login_failed", username=name, ip=ip, reason=reason)
        metrics.LOGINS.labels("failure").inc()
        raise InvalidCredentials
    if user.disabled:
        await _audit_login(session, context, name, "failure", "disabled", via)
        metrics.LOGINS.labels("failure").inc()
        raise UserDisabled

    await throttle.clear([user_key, ip_key])
    user.last_login_at = now
    if security.passwords.needs_rehash(user.password_hash):
        user.password_hash = await security.passwords.hash(password)
    await session.flush()
    context = AuditContext(actor=f"user:{name}", ip=ip, request_id=request_id)
    await _audit_login(session, context, name, "success", None, via)
    log.info("auth.login", username=name, ip=ip)
    metrics.LOGINS.labels("success").inc()
    return user, now


async def _audit_login(
    session: AsyncSession,
    context: AuditContext,
    name: str,
    result: str,
    reason: str | None,
    via: str | None,
) -> None:
    details: dict[str, str] = {"username": name}
    if reason:
        details["reason"] = reason
    if via:
        details["via"] = via
    await audit_service.record(
        session, context, action="auth.login", target=f"user:{name}", result=result, details=details
    )


async def authenticate(session: AsyncSession, security: Security, bearer: str) -> Principal:
    """Resolve a bearer credential (JWT or API token) to a principal, or raise InvalidToken
    (counted in ``tgfleet_auth_denied_total`` by its reason)."""
    users = UserRepository(session)
    if is_api_token(bearer):
        tokens = ApiTokenRepository(session)
        row = await tokens.by_hash(token_digest(bearer))
        if row is None:
            raise denied("invalid_token", InvalidToken("the API token is unknown or revoked"))
        now = utcnow()
        if row.expires_at is not None and row.expires_at <= now:
            raise denied("expired_token", InvalidToken("the API token has expired"))
        user = await users.by_id(row.user_id)
        if user is None or user.disabled:
            raise denied(
                "invalid_token" if user is None else "disabled_user",
                InvalidToken("the API token's user is disabled"),
            )
        permissions = role_permissions(user.role)
        if row.scopes is not None:
            permissions &= parse_permissions(row.scopes)
        if row.last_used_at is None or now - row.last_used_at > TOKEN_TOUCH_INTERVAL:
            row.last_used_at = now
            await session.flush()
        return Principal(
            user_id=user.id,
            username=user.username,
            role=user.role.name,
            permissions=permissions,
            via="api_token",
            token_name=row.name,
        )
    try:
        claims = security.jwt.decode(bearer)
    except InvalidToken as exc:
        # The codec chains PyJWT's error; an expiry is the refusal worth telling apart.
        expired = isinstance(exc.__cause__, jwt.ExpiredSignatureError)
        count_denied("expired_token" if expired else "invalid_token")
        raise
    user = await users.by_id(claims.user_id)
    if user is None or user.disabled:
        raise denied(
            "invalid_token" if user is None else "disabled_user",
            InvalidToken("the access token's user is disabled or gone"),
        )
    # The epoch ends every JWT at once (disable, password change); the timestamp covers
    # tokens issued before the epoch existed.
    if claims.token_epoch != user.token_epoch or claims.issued_at.timestamp() < math.floor(
        user.credentials_changed_at.timestamp()
    ):
        raise denied(
            "stale_token",
            InvalidToken(
                "this token was revoked (the user was disabled or the password changed); "
                "log in again"
            ),
        )
    return Principal(
        user_id=user.id,
        username=user.username,
        role=user.role.name,
        permissions=role_permissions(user.role),
        via="jwt",
        token_epoch=user.token_epoch,
    )
