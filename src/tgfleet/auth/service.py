"""Auth services: login with throttling, bearer authentication, users, roles, API tokens.

Every change is audited in the caller's unit of work (``tgfleet.audit.service.record``).
Services flush; the unit of work commits.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import jwt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import metrics
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.exceptions import (
    BuiltinRoleReadOnly,
    InvalidCredentials,
    InvalidScope,
    InvalidToken,
    InvalidUsername,
    LastAdmin,
    LoginThrottled,
    PermissionDenied,
    RoleExists,
    RoleInUse,
    RoleNotFound,
    TokenExists,
    TokenNotFound,
    UserDisabled,
    UserExists,
    UsernameConfusable,
    UserNotFound,
)
from tgfleet.auth.passwords import Passwords
from tgfleet.auth.permissions import ADMIN, BUILTIN_ROLES, Permission, parse_permissions
from tgfleet.auth.repository import (
    ApiTokenRepository,
    RoleRepository,
    ThrottleRepository,
    UserRepository,
)
from tgfleet.auth.schemas import (
    USERNAME_PATTERN,
    Principal,
    normalise_username,
    username_problem,
)
from tgfleet.auth.secret import jwt_secret
from tgfleet.auth.tokens import (
    JwtCodec,
    api_token_display,
    api_token_hash,
    is_api_token,
    new_api_token,
)
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.names import skeleton_key
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.logging import get_logger
from tgfleet.models import ApiToken, Role, User

log = get_logger(__name__)

TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)

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
]


def count_denied(reason: DeniedReason) -> None:
    """Count one request refused by authentication or authorisation."""
    metrics.AUTH_DENIED.labels(reason).inc()


def _denied(reason: DeniedReason, error: _Refusal) -> _Refusal:
    """``error``, counted as a refusal for ``reason``: ``raise _denied(reason, error)``."""
    count_denied(reason)
    return error


@dataclass(frozen=True)
class Security:
    """Everything the auth services need from the settings, built once per process."""

    passwords: Passwords
    jwt: JwtCodec
    throttle_threshold: int
    throttle_base_seconds: float
    throttle_max_seconds: float
    throttle_window_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        return cls(
            passwords=Passwords(
                time_cost=settings.argon2_time_cost,
                memory_kib=settings.argon2_memory_kib,
                parallelism=settings.argon2_parallelism,
                min_length=settings.password_min_length,
            ),
            jwt=JwtCodec(jwt_secret(settings), settings.jwt_algorithm, settings.jwt_ttl_seconds),
            throttle_threshold=settings.login_throttle_threshold,
            throttle_base_seconds=settings.login_throttle_base_seconds,
            throttle_max_seconds=settings.login_throttle_max_seconds,
            throttle_window_seconds=settings.login_throttle_window_seconds,
        )

    def throttle_delay(self, failures: int) -> float:
        """Seconds to block after ``failures`` consecutive failures (0 below the threshold)."""
        if failures < self.throttle_threshold:
            return 0.0
        exponent = min(failures - self.throttle_threshold, 32)
        return float(min(self.throttle_base_seconds * 2**exponent, self.throttle_max_seconds))


def role_permissions(role: Role) -> frozenset[Permission]:
    """A role's permissions: built-in roles from code, custom roles from the database."""
    if role.builtin and role.name in BUILTIN_ROLES:
        return BUILTIN_ROLES[role.name]
    return parse_permissions(list(role.permissions))


def cli_principal(os_user: str) -> Principal:
    """The local operator at the CLI: whoever can run it can already read the database."""
    return Principal(
        user_id=None, username=os_user, role=ADMIN, permissions=frozenset(Permission), via="cli"
    )


# ---------------------------------------------------------------------------- login


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
    """Check a username and password and issue a JWT.

    Failures count against the username and the client address; past the threshold each
    key is blocked for a growing delay (429 with Retry-After). A success clears the
    counters of that username and that address only.
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
        await _audit_login(session, context, name, "failure", "throttled")
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
        await _audit_login(session, context, name, "failure", reason)
        log.info("auth.login_failed", username=name, ip=ip, reason=reason)
        metrics.LOGINS.labels("failure").inc()
        raise InvalidCredentials
    if user.disabled:
        await _audit_login(session, context, name, "failure", "disabled")
        metrics.LOGINS.labels("failure").inc()
        raise UserDisabled

    await throttle.clear([user_key, ip_key])
    user.last_login_at = now
    if security.passwords.needs_rehash(user.password_hash):
        user.password_hash = await security.passwords.hash(password)
    await session.flush()
    context = AuditContext(actor=f"user:{name}", ip=ip, request_id=request_id)
    await _audit_login(session, context, name, "success", None)
    log.info("auth.login", username=name, ip=ip)
    metrics.LOGINS.labels("success").inc()
    return IssuedToken(
        access_token=security.jwt.issue(user.id, user.token_epoch, now=now),
        expires_in=security.jwt.ttl_seconds,
    )


async def _audit_login(
    session: AsyncSession, context: AuditContext, name: str, result: str, reason: str | None
) -> None:
    details: dict[str, str] = {"username": name}
    if reason:
        details["reason"] = reason
    await audit_service.record(
        session, context, action="auth.login", target=f"user:{name}", result=result, details=details
    )


async def authenticate(session: AsyncSession, security: Security, bearer: str) -> Principal:
    """Resolve a bearer credential (JWT or API token) to a principal, or raise InvalidToken
    (counted in ``tgfleet_auth_denied_total`` by its reason)."""
    users = UserRepository(session)
    if is_api_token(bearer):
        tokens = ApiTokenRepository(session)
        row = await tokens.by_hash(api_token_hash(bearer))
        if row is None:
            raise _denied("invalid_token", InvalidToken("the API token is unknown or revoked"))
        now = utcnow()
        if row.expires_at is not None and row.expires_at <= now:
            raise _denied("expired_token", InvalidToken("the API token has expired"))
        user = await users.by_id(row.user_id)
        if user is None or user.disabled:
            raise _denied(
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
        raise _denied(
            "invalid_token" if user is None else "disabled_user",
            InvalidToken("the access token's user is disabled or gone"),
        )
    # The epoch ends every JWT at once (disable, password change); the timestamp covers
    # tokens issued before the epoch existed.
    if claims.token_epoch != user.token_epoch or claims.issued_at.timestamp() < math.floor(
        user.credentials_changed_at.timestamp()
    ):
        raise _denied(
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
        raise _denied("wrong_password", PermissionDenied("the current password is wrong"))
    security.passwords.check_policy(new, username=user.username)
    user.password_hash = await security.passwords.hash(new)
    _end_sessions(user)
    await session.flush()
    await audit_service.record(
        session, context, action="auth.password.change", target=f"user:{user.username}"
    )


def _require_interactive(principal: Principal, what: str) -> None:
    """Credential changes need a password login: a leaked API token must not be able to
    entrench itself by minting tokens or changing the owner's password."""
    if principal.via != "jwt":
        raise _denied(
            "forbidden", PermissionDenied(f"only a logged-in user can {what}, not an API token")
        )


async def _user_of(session: AsyncSession, principal: Principal, *, lock: bool = False) -> User:
    """The caller's user row. A credential change ``lock``s it: a disable running meanwhile
    either waits for this unit of work (and then deletes what it created) or has committed,
    and is seen here and refused."""
    if principal.user_id is None:
        raise _denied("forbidden", PermissionDenied("this action needs a logged-in user"))
    user = await UserRepository(session).by_id(principal.user_id, for_update=lock)
    if user is None:
        raise UserNotFound("the calling user no longer exists")
    if principal.via == "jwt" and (user.disabled or user.token_epoch != principal.token_epoch):
        raise _denied("stale_token", InvalidToken("this token was revoked meanwhile; log in again"))
    return user


def _end_sessions(user: User) -> None:
    """End every JWT issued to ``user`` so far, in every API process (state in the row)."""
    user.token_epoch += 1
    user.credentials_changed_at = utcnow()


# ----------------------------------------------------------------------- API tokens


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
        token_hash=api_token_hash(secret),
        prefix=api_token_display(secret),
        scopes=sorted(str(scope) for scope in scopes) if scopes is not None else None,
        expires_at=expires_at,
    )
    await tokens.add(row)
    await audit_service.record(
        session,
        context,
        action="auth.token.create",
        target=f"token:{row.id}",
        details={
            "name": name,
            "owner": user.username,
            "scopes": row.scopes,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return row, secret


async def list_api_tokens(session: AsyncSession, principal: Principal) -> list[ApiToken]:
    user = await _user_of(session, principal)
    return await ApiTokenRepository(session).for_user(user.id)


async def revoke_api_token(
    session: AsyncSession, context: AuditContext, principal: Principal, token_id: uuid.UUID
) -> None:
    """Delete one of the caller's tokens; the next request that uses it gets a 401."""
    _require_interactive(principal, "revoke API tokens")
    user = await _user_of(session, principal, lock=True)
    row = await ApiTokenRepository(session).delete_one(user.id, token_id)
    if row is None:
        raise TokenNotFound(f"you have no token with id {token_id}")
    await audit_service.record(
        session,
        context,
        action="auth.token.revoke",
        target=f"token:{token_id}",
        details={"name": row.name, "owner": user.username},
    )


# ---------------------------------------------------------------------------- users


async def create_user(
    session: AsyncSession,
    security: Security,
    context: AuditContext,
    *,
    username: str,
    role: str,
    password: str | None,
) -> tuple[User, str | None]:
    """Create a user; with no password given, generate one and return it (shown once)."""
    name = normalise_username(username)
    problem = username_problem(name)
    if problem:
        raise InvalidUsername(problem)
    role_row = await _role(session, role)
    users = UserRepository(session)
    if await users.by_username(name) is not None:
        raise UserExists(f"a user named {name!r} already exists")
    key = skeleton_key(name)
    look_alike = await users.by_skeleton(key)
    if look_alike is not None:
        raise UsernameConfusable(
            f"the username {name!r} looks like the existing user {look_alike.username!r} "
            "(Unicode confusables); choose a name that cannot be mistaken for it"
        )
    generated = None
    if password is None:
        generated = password = security.passwords.generate()
    security.passwords.check_policy(password, username=name)
    user = User(
        username=name, username_skeleton=key, password_hash=await security.passwords.hash(password)
    )
    user.role_id = role_row.id
    try:
        await users.add(user)
    except IntegrityError as exc:  # a concurrent create of the same or a look-alike name
        raise UserExists(
            f"a user named {name!r}, or one that looks like it, was created meanwhile"
        ) from exc
    await audit_service.record(
        session,
        context,
        action="user.create",
        target=f"user:{name}",
        details={"role": role_row.name, "generated": generated is not None},
    )
    await session.refresh(user, ["role"])
    return user, generated


async def list_users(
    session: AsyncSession, *, cursor: str | None, limit: int = DEFAULT_LIMIT, q: str | None = None
) -> Slice[User]:
    key = decode_cursor(cursor)
    after = str(key["username"]) if key and "username" in key else None
    rows = await UserRepository(session).page(after=after, limit=limit, q=q)
    return slice_rows(rows, limit, lambda user: {"username": user.username})


async def get_user(session: AsyncSession, username: str, *, for_update: bool = False) -> User:
    """A user by name; ``for_update`` locks the row (PostgreSQL) for a read-modify-write
    such as incrementing the token epoch."""
    name = normalise_username(username)
    user = await UserRepository(session).by_username(name, for_update=for_update)
    if user is None:
        raise UserNotFound(f"no user named {name!r}")
    return user


async def set_user_disabled(
    session: AsyncSession, context: AuditContext, username: str, *, disabled: bool
) -> User:
    """Disable (or enable) a user. Disabling ends their credentials for good: every JWT
    issued before is refused even after they are enabled again, and their API tokens are
    deleted (they create new ones once enabled). Refused when it would leave no enabled admin.
    """
    user = await get_user(session, username, for_update=True)
    if disabled and not user.disabled:
        await _refuse_last_admin(session, user, "disable")
    details: dict[str, object] | None = None
    if disabled:
        # The user row is locked (above): a token creation that locked it first has
        # committed by now, and this delete (a new statement) sees and deletes its token.
        user.disabled = True
        _end_sessions(user)
        await session.flush()
        revoked = await ApiTokenRepository(session).delete_for_user(user.id)
        details = {"api_credentials_deleted": revoked}  # not "token": that key is scrubbed
    else:
        user.disabled = False
        await session.flush()
    await audit_service.record(
        session,
        context,
        action="user.disable" if disabled else "user.enable",
        target=f"user:{user.username}",
        details=details,
    )
    return user


async def change_user_role(
    session: AsyncSession, context: AuditContext, username: str, role: str
) -> User:
    user = await get_user(session, username)
    new_role = await _role(session, role)
    old_role = user.role.name
    if old_role != new_role.name:
        await _refuse_last_admin(session, user, "demote")
        user.role_id = new_role.id
        await session.flush()
        await audit_service.record(
            session,
            context,
            action="user.role.change",
            target=f"user:{user.username}",
            details={"from": old_role, "to": new_role.name},
        )
        await session.refresh(user, ["role"])
    return user


async def reset_password(
    session: AsyncSession,
    security: Security,
    context: AuditContext,
    username: str,
    password: str | None,
) -> str | None:
    """Set a user's password (generated when not given); their JWTs stop working."""
    user = await get_user(session, username, for_update=True)
    generated = None
    if password is None:
        generated = password = security.passwords.generate()
    security.passwords.check_policy(password, username=user.username)
    user.password_hash = await security.passwords.hash(password)
    _end_sessions(user)
    await session.flush()
    await audit_service.record(
        session,
        context,
        action="user.password.reset",
        target=f"user:{user.username}",
        details={"generated": generated is not None},
    )
    return generated


async def ensure_admin(
    session: AsyncSession, security: Security, context: AuditContext
) -> tuple[str, str] | None:
    """Create user ``admin`` with a generated password when no enabled admin exists.

    Returns (username, password) when it created one, so the caller can show it once.
    """
    admin_role = await _role(session, ADMIN)
    if await UserRepository(session).count_enabled_with_role(admin_role.id) > 0:
        return None
    if await UserRepository(session).by_username(ADMIN) is not None:
        log.warning("auth.no_enabled_admin", hint="tgfleet user create NAME --role admin")
        return None
    try:
        user, password = await create_user(
            session, security, context, username=ADMIN, role=ADMIN, password=None
        )
    except UsernameConfusable as exc:  # a look-alike of "admin" exists: never make a second
        log.warning("auth.no_enabled_admin", reason=exc.message, hint="tgfleet user create")
        return None
    if password is None:  # create_user generates one when given None
        msg = "no password was generated for the new admin"
        raise RuntimeError(msg)
    return user.username, password


async def _refuse_last_admin(session: AsyncSession, user: User, verb: str) -> None:
    if user.disabled or user.role.name != ADMIN:
        return
    # Lock the admin role row so two concurrent demotions cannot both pass the count.
    await session.execute(select(Role.id).where(Role.name == ADMIN).with_for_update())
    if await UserRepository(session).count_enabled_with_role(user.role_id) <= 1:
        msg = f"refused to {verb} {user.username!r}: it is the last enabled admin"
        raise LastAdmin(msg)


# ---------------------------------------------------------------------------- roles


async def _role(session: AsyncSession, name: str) -> Role:
    role = await RoleRepository(session).by_name(name)
    if role is None:
        raise RoleNotFound(f"no role named {name!r}")
    return role


async def list_roles(session: AsyncSession) -> list[Role]:
    return await RoleRepository(session).list_all()


async def get_role(session: AsyncSession, name: str) -> Role:
    return await _role(session, name)


async def create_role(
    session: AsyncSession,
    context: AuditContext,
    *,
    name: str,
    description: str,
    permissions: list[Permission],
) -> Role:
    roles = RoleRepository(session)
    if await roles.by_name(name) is not None:
        raise RoleExists(f"a role named {name!r} already exists")
    role = Role(
        name=name,
        description=description,
        builtin=False,
        permissions=sorted({str(p) for p in permissions}),
    )
    try:
        await roles.add(role)
    except IntegrityError as exc:
        raise RoleExists(f"a role named {name!r} already exists") from exc
    await audit_service.record(
        session,
        context,
        action="role.create",
        target=f"role:{name}",
        details={"permissions": role.permissions},
    )
    return role


async def update_role(
    session: AsyncSession,
    context: AuditContext,
    name: str,
    *,
    description: str | None,
    permissions: list[Permission] | None,
) -> Role:
    role = await _role(session, name)
    if role.builtin:
        raise BuiltinRoleReadOnly(f"the built-in role {name!r} cannot be changed")
    changes: dict[str, object] = {}
    if description is not None and description != role.description:
        role.description = description
        changes["description"] = description
    if permissions is not None:
        codes = sorted({str(p) for p in permissions})
        if codes != role.permissions:
            changes["permissions"] = {"from": role.permissions, "to": codes}
            role.permissions = codes
    if changes:
        await session.flush()
        await audit_service.record(
            session, context, action="role.update", target=f"role:{name}", details=changes
        )
    return role


async def delete_role(session: AsyncSession, context: AuditContext, name: str) -> None:
    roles = RoleRepository(session)
    role = await _role(session, name)
    if role.builtin:
        raise BuiltinRoleReadOnly(f"the built-in role {name!r} cannot be deleted")
    in_use = await roles.users_with_role(role.id)
    if in_use:
        raise RoleInUse(f"role {name!r} is held by {in_use} user(s); change their role first")
    await roles.delete(role)
    await audit_service.record(session, context, action="role.delete", target=f"role:{name}")
