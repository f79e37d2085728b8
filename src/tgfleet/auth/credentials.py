"""The caller's own credentials: changing their password, and their named API tokens.

Both need a password login (a JWT or a console session), not an API token, and lock the
caller's user row so a disable running meanwhile cannot miss what they create. Every change
is audited in the caller's unit of work; services flush, the unit of work commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth._refusals import denied
from tgfleet.auth.exceptions import (
    InvalidScope,
    InvalidToken,
    PermissionDenied,
    TokenExists,
    TokenNotFound,
    UserNotFound,
)
from tgfleet.auth.permissions import Permission
from tgfleet.auth.repository import ApiTokenRepository, UserRepository
from tgfleet.auth.schemas import Principal
from tgfleet.auth.security import Security
from tgfleet.auth.tokens import api_token_display, new_api_token, token_digest
from tgfleet.auth.users import end_sessions
from tgfleet.kit.clock import utcnow
from tgfleet.models import ApiToken, User

#: The credentials a password login gives, which may change credentials.
PASSWORD_LOGINS = frozenset({"jwt", "console"})


async def change_own_password(
    session: AsyncSession,
    security: Security,
    context: AuditContext,
    principal: Principal,
    *,
    current: str,
    new: str,
) -> None:
    """Change the caller's password; every JWT issued before now stops working."""
    _require_interactive(principal, "change the password")
    user = await _user_of(session, principal, lock=True)
    if not await security.passwords.verify(user.password_hash, current):
        raise denied("wrong_password", PermissionDenied("the current password is wrong"))
    security.passwords.check_policy(new, username=user.username)
    user.password_hash = await security.passwords.hash(new)
    end_sessions(user)
    await session.flush()
    await audit_service.record(
        session, context, action="auth.password.change", target=f"user:{user.username}"
    )


def _require_interactive(principal: Principal, what: str) -> None:
    """Credential changes need a password login (a JWT or a console session): a leaked API
    token must not be able to entrench itself by minting tokens or changing the owner's
    password."""
    if principal.via not in PASSWORD_LOGINS:
        raise denied(
            "forbidden", PermissionDenied(f"only a logged-in user can {what}, not an API token")
        )


async def _user_of(session: AsyncSession, principal: Principal, *, lock: bool = False) -> User:
    """The caller's user row. A credential change ``lock``s it: a disable running meanwhile
    either waits for this unit of work (and then deletes what it created) or has committed,
    and is seen here and refused."""
    if principal.user_id is None:
        raise denied("forbidden", PermissionDenied("this action needs a logged-in user"))
    user = await UserRepository(session).by_id(principal.user_id, for_update=lock)
    if user is None:
        raise UserNotFound("the calling user no longer exists")
    if principal.via in PASSWORD_LOGINS and (
        user.disabled or user.token_epoch != principal.token_epoch
    ):
        raise denied("stale_token", InvalidToken("this token was revoked meanwhile; log in again"))
    return user


async def create_api_token(
    session: AsyncSession,
    context: AuditContext,
    principal: Principal,
    *,
    name: str,
    expires_at: datetime | None,
    scopes: list[Permission] | None,
) -> tuple[ApiToken, str]:
    """Create a named token for the caller and return it with its secret (shown once)."""
    _require_interactive(principal, "create API tokens")
    user = await _user_of(session, principal, lock=True)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidScope("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
        if expires_at <= utcnow():
            raise InvalidScope("expires_at is in the past")
    if scopes is not None:
        extra = sorted(set(scopes) - principal.permissions)
        if extra:
            raise InvalidScope(f"you do not hold these permissions: {', '.join(extra)}")
    tokens = ApiTokenRepository(session)
    if await tokens.by_name(user.id, name) is not None:
        raise TokenExists(f"you already have a token named {name!r}")
    secret = new_api_token()
    row = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=token_digest(secret),
        prefix=api_token_display(secret),
        scopes=sorted(str(scope) for scope in scopes) if scopes is not None else None,
        expires_at=expires_at,
    )
    await tokens.add(row)
    expiry = expires_at.isoformat() if expires_at else None
    await _audit_token(
        session, context, "auth.token.create", row, user, scopes=row.scopes, expires_at=expiry
    )
    return row, secret


async def list_api_tokens(session: AsyncSession, principal: Principal) -> list[ApiToken]:
    user = await _user_of(session, principal)
    return await ApiTokenRepository(session).for_user(user.id)


async def revoke_api_token(
    session: AsyncSession, context: AuditContext, principal: Principal, token_id: uuid.UUID
) -> None:
    """Delete one of the caller's tokens; the next request that uses it gets a 401. An API
    token may revoke itself (``tgfleet logout``), no other token: only a password login
    manages the rest."""
    if not await _revokes_itself(session, principal, token_id):
        _require_interactive(principal, "revoke API tokens other than itself")
    user = await _user_of(session, principal, lock=True)
    row = await ApiTokenRepository(session).delete_one(user.id, token_id)
    if row is None:
        raise TokenNotFound(f"you have no token with id {token_id}")
    await _audit_token(session, context, "auth.token.revoke", row, user)


async def _revokes_itself(session: AsyncSession, principal: Principal, token_id: uuid.UUID) -> bool:
    """Whether an API token's principal names its own token (names are unique per user)."""
    if principal.via != "api_token" or principal.user_id is None or principal.token_name is None:
        return False
    own = await ApiTokenRepository(session).by_name(principal.user_id, principal.token_name)
    return own is not None and own.id == token_id


async def _audit_token(
    session: AsyncSession,
    context: AuditContext,
    action: str,
    token: ApiToken,
    owner: User,
    **details: object,
) -> None:
    """One audit record about an API token, naming it and its owner first."""
    await audit_service.record(
        session,
        context,
        action=action,
        target=f"token:{token.id}",
        details={"name": token.name, "owner": owner.username, **details},
    )
