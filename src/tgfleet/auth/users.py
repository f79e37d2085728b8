"""Users, as an admin manages them: create, list, disable and enable, change the role, reset
the password; the first admin on an empty database; the last enabled admin kept.

Every change is audited in the caller's unit of work; services flush, the unit of work
commits.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.exceptions import (
    InvalidUsername,
    LastAdmin,
    UserExists,
    UsernameConfusable,
    UserNotFound,
)
from tgfleet.auth.permissions import ADMIN
from tgfleet.auth.repository import ApiTokenRepository, UserRepository
from tgfleet.auth.roles import get_role
from tgfleet.auth.schemas import normalise_username, username_problem
from tgfleet.auth.security import Security
from tgfleet.kit.clock import utcnow
from tgfleet.kit.names import skeleton_key
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.logging import get_logger
from tgfleet.models import Role, User

#: Its lines keep the logger they had before the service was split.
log = get_logger("tgfleet.auth.service")


def end_sessions(user: User) -> None:
    """End every JWT issued to ``user`` so far, in every API process (state in the row)."""
    user.token_epoch += 1
    user.credentials_changed_at = utcnow()


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
    role_row = await get_role(session, role)
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
    details = {"role": role_row.name, "generated": generated is not None}
    await _audit(session, context, "user.create", name, details)
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
        end_sessions(user)
        await session.flush()
        revoked = await ApiTokenRepository(session).delete_for_user(user.id)
        details = {"api_credentials_deleted": revoked}  # not "token": that key is scrubbed
    else:
        user.disabled = False
        await session.flush()
    action = "user.disable" if disabled else "user.enable"
    await _audit(session, context, action, user.username, details)
    return user


async def change_user_role(
    session: AsyncSession, context: AuditContext, username: str, role: str
) -> User:
    user = await get_user(session, username)
    new_role = await get_role(session, role)
    old_role = user.role.name
    if old_role != new_role.name:
        await _refuse_last_admin(session, user, "demote")
        user.role_id = new_role.id
        await session.flush()
        changed = {"from": old_role, "to": new_role.name}
        await _audit(session, context, "user.role.change", user.username, changed)
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
    end_sessions(user)
    await session.flush()
    details = {"generated": generated is not None}
    await _audit(session, context, "user.password.reset", user.username, details)
    return generated


#: A language tag as the console stores it (``en``, ``zh-Hans``): BCP 47's shape, bounded.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,2}")


async def set_language(
    session: AsyncSession, context: AuditContext, user_id: uuid.UUID, language: str | None
) -> User:
    """The console language ``user_id`` chose for themselves (None: follow the browser).
    Audited ``user.language``; the caller checks the tag is one it ships."""
    if language is not None and not _LANGUAGE_TAG.fullmatch(language):
        msg = "a language is a tag such as en or zh-Hans"
        raise ValueError(msg)
    user = await UserRepository(session).by_id(user_id)
    if user is None:
        raise UserNotFound(f"no user with id {user_id}")
    if user.language != language:
        changed = {"from": user.language, "to": language}
        user.language = language
        await session.flush()
        await _audit(session, context, "user.language", user.username, changed)
    return user


async def ensure_admin(
    session: AsyncSession, security: Security, context: AuditContext
) -> tuple[str, str] | None:
    """Create user ``admin`` with a generated password when no enabled admin exists.

    Returns (username, password) when it created one, so the caller can show it once.
    """
    admin_role = await get_role(session, ADMIN)
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


async def _audit(
    session: AsyncSession,
    context: AuditContext,
    action: str,
    username: str,
    details: Mapping[str, object] | None,
) -> None:
    """One audit record about the user ``username``."""
    await audit_service.record(
        session, context, action=action, target=f"user:{username}", details=details
    )


async def _refuse_last_admin(session: AsyncSession, user: User, verb: str) -> None:
    if user.disabled or user.role.name != ADMIN:
        return
    # Lock the admin role row so two concurrent demotions cannot both pass the count.
    await session.execute(select(Role.id).where(Role.name == ADMIN).with_for_update())
    if await UserRepository(session).count_enabled_with_role(user.role_id) <= 1:
        msg = f"refused to {verb} {user.username!r}: it is the last enabled admin"
        raise LastAdmin(msg)
