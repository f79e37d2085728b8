"""The ``traffic_minute`` table: the fleet's messages and replies per minute."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from tgfleet.account.repository import rowcount
from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import TrafficMinute


class TrafficRepository(RepositoryBase[TrafficMinute]):
    model = TrafficMinute

    async def add_counts(self, minute: datetime, *, received: int, sent: int) -> None:
        """Add to one minute's counts atomically: several workers write the same row."""
        dialect = self.session.get_bind().dialect.name
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(TrafficMinute).values(minute=minute, received=received, sent=sent)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=[TrafficMinute.minute],
                set_={
                    "received": TrafficMinute.received + statement.excluded.received,
                    "sent": TrafficMinute.sent + statement.excluded.sent,
                },
            )
        )

    async def since(self, first: datetime) -> list[TrafficMinute]:
        """The rows from minute ``first`` on, oldest first."""
        return await self.all(
            select(TrafficMinute)
            .where(TrafficMinute.minute >= first)
            .order_by(TrafficMinute.minute)
        )

    async def delete_before(self, cutoff: datetime) -> int:
        """Delete the minutes before ``cutoff``; how many were deleted."""
        result = await self.session.execute(
            delete(TrafficMinute).where(TrafficMinute.minute < cutoff)
        )
        return rowcount(result)
