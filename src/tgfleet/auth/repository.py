from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import joinedload

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import ApiToken, ConsoleSession, LoginThrottle, Role, User


class RoleRepository(RepositoryBase[Role]):
    model = Role

    async def by_name(self, name: str) -> Role | None:
        return await self.first(select(Role).where(Role.name == name))

    async def list_all(self) -> list[Role]:
        return await self.all(select(Role).order_by(Role.builtin.desc(), Role.name))

    async def users_with_role(self, role_id: int) -> int:
        return await self.count(select(User.id).where(User.role_id == role_id))

    async def delete(self, role: Role) -> None:
        await self.session.delete(role)
        await self.session.flush()


class UserRepository(RepositoryBase[User]):
    model = User

    async def by_username(self, username: str, *, for_update: bool = False) -> User | None:
        statement = select(User).options(joinedload(User.role)).where(User.username == username)
        if for_update:  # the user row only, not the role joined to it
            statement = statement.with_for_update(of=User)
        return await self.first(statement)

    async def by_id(self, user_id: uuid.UUID, *, for_update: bool = False) -> User | None:
        statement = select(User).options(joinedload(User.role)).where(User.id == user_id)
        if for_update:  # the user row only, not the role joined to it
            statement = statement.with_for_update(of=User)
        return await self.first(statement)

    async def by_skeleton(self, key: str) -> User | None:
        return await self.first(select(User).where(User.username_skeleton == key))

    async def any_exists(self) -> bool:
        return await self.first(select(User)) is not None

    async def page(self, *, after: str | None, limit: int, q: str | None) -> list[User]:
        statement = select(User).options(joinedload(User.role)).order_by(User.username)
        if after is not None:
            statement = statement.where(User.username > after)
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(User.username.like(f"%{escaped}%", escape="\\"))
        return await self.all(statement.limit(limit + 1))

    async def count_enabled_with_role(self, role_id: int) -> int:
        return await self.count(
            select(User.id).where(User.role_id == role_id, User.disabled.is_(False))
        )


class ApiTokenRepository(RepositoryBase[ApiToken]):
    model = ApiToken

    async def by_hash(self, token_hash: str) -> ApiToken | None:
        return await self.first(select(ApiToken).where(ApiToken.token_hash == token_hash))

    async def by_name(self, user_id: uuid.UUID, name: str) -> ApiToken | None:
        return await self.first(
            select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.name == name)
        )

    async def for_user(self, user_id: uuid.UUID) -> list[ApiToken]:
        return await self.all(
            select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at)
        )

    async def delete_for_user(self, user_id: uuid.UUID) -> int:
        result = await self.session.execute(delete(ApiToken).where(ApiToken.user_id == user_id))
        return int(getattr(result, "rowcount", 0) or 0)

    async def delete_one(self, user_id: uuid.UUID, token_id: uuid.UUID) -> ApiToken | None:
        token = await self.first(
            select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.id == token_id)
        )
        if token is not None:
            await self.session.delete(token)
            await self.session.flush()
        return token


class ThrottleRepository(RepositoryBase[LoginThrottle]):
    model = LoginThrottle

    async def blocked_until(self, keys: list[str]) -> list[datetime]:
        result = await self.session.execute(
            select(LoginThrottle.blocked_until).where(
                LoginThrottle.key.in_(keys), LoginThrottle.blocked_until.is_not(None)
            )
        )
        return [value for value in result.scalars().all() if value is not None]

    async def add_failure(self, key: str, now: datetime, window_start: datetime) -> int:
        """Count one failure for ``key`` atomically (upsert) and return the new count.

        A counter whose last failure is older than ``window_start`` starts again at 1.
        """
        dialect = self.session.get_bind().dialect.name
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(LoginThrottle).values(key=key, failures=1, last_failure_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[LoginThrottle.key],
            set_={
                "failures": case(
                    (LoginThrottle.last_failure_at < window_start, 1),
                    else_=LoginThrottle.failures + 1,
                ),
                "last_failure_at": now,
            },
        ).returning(LoginThrottle.failures)
        return int((await self.session.execute(statement)).scalar_one())

    async def block(self, key: str, until: datetime) -> None:
        row = await self.session.get(LoginThrottle, key)
        if row is not None:
            row.blocked_until = until
            await self.session.flush()

    async def clear(self, keys: list[str]) -> None:
        await self.session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))

    async def forget_older_than(self, moment: datetime) -> int:
        result = await self.session.execute(
            delete(LoginThrottle).where(
                LoginThrottle.last_failure_at < moment,
                func.coalesce(LoginThrottle.blocked_until, LoginThrottle.last_failure_at) < moment,
            )
        )  # a small table: rows live at most one window
        return int(getattr(result, "rowcount", 0) or 0)


class ConsoleSessionRepository(RepositoryBase[ConsoleSession]):
    model = ConsoleSession

    async def by_hash(self, token_hash: str) -> ConsoleSession | None:
        return await self.first(
            select(ConsoleSession).where(ConsoleSession.token_hash == token_hash)
        )

    async def by_id(self, session_id: uuid.UUID) -> ConsoleSession | None:
        return await self.first(select(ConsoleSession).where(ConsoleSession.id == session_id))

    async def open_for_user(self, user_id: uuid.UUID, now: datetime) -> list[ConsoleSession]:
        """The user's sessions neither revoked nor past their absolute end, oldest first."""
        return await self.all(
            select(ConsoleSession)
            .where(
                ConsoleSession.user_id == user_id,
                ConsoleSession.revoked_at.is_(None),
                ConsoleSession.expires_at > now,
            )
            .order_by(ConsoleSession.created_at, ConsoleSession.id)
        )

    async def delete_ended_before(self, moment: datetime) -> int:
        """Delete the sessions revoked, or past their absolute end, before ``moment``."""
        result = await self.session.execute(
            delete(ConsoleSession).where(
                or_(ConsoleSession.revoked_at < moment, ConsoleSession.expires_at < moment)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
