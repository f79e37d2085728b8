"""What the fleet heard and said: traffic per minute, the replies an account sent, and the
housekeeping that keeps both bounded.

Workers write both as part of their status batches (:func:`tgfleet.account.runtime.apply`:
the counter deltas go to ``traffic_minute``; :func:`tgfleet.account.runtime.reply_event`
makes each sent reply a ``reply`` timeline event). This module reads them for the console
and the API, and prunes them (:func:`prune`, run by :mod:`tgfleet.account.housekeeping`):
traffic older than :data:`TRAFFIC_RETENTION` is deleted; a reply's text older than
``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` is blanked (its event stays, so the timeline and the
counts keep the reply, without what was said).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.repository import AccountEventRepository
from tgfleet.account.runtime import REPLY, minute_of
from tgfleet.account.service import list_events
from tgfleet.account.traffic_repository import TrafficRepository
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.clock import utcnow
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice
from tgfleet.models import AccountEvent

#: How long the per-minute traffic is kept.
TRAFFIC_RETENTION: Final = timedelta(days=7)
#: The longest window :func:`traffic` answers (the whole retention).
TRAFFIC_MAX_MINUTES: Final = int(TRAFFIC_RETENTION.total_seconds() // 60)


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    """The fleet's messages received and replies sent in one UTC minute (its start)."""

    minute: datetime
    received: int
    sent: int


async def traffic(
    session: AsyncSession, *, minutes: int = 60, now: datetime | None = None
) -> list[TrafficPoint]:
    """The fleet's traffic of the last ``minutes`` minutes: exactly ``minutes`` points,
    oldest first, the last one the current (unfinished) minute; a minute without traffic
    is a zero point."""
    if not 1 <= minutes <= TRAFFIC_MAX_MINUTES:
        msg = f"minutes must be between 1 and {TRAFFIC_MAX_MINUTES}"
        raise InvalidInput(msg)
    last = minute_of(now or utcnow())
    first = last - timedelta(minutes=minutes - 1)
    counted = {row.minute: row for row in await TrafficRepository(session).since(first)}
    points = []
    for step in range(minutes):
        minute = first + timedelta(minutes=step)
        row = counted.get(minute)
        points.append(
            TrafficPoint(
                minute=minute,
                received=row.received if row is not None else 0,
                sent=row.sent if row is not None else 0,
            )
        )
    return points


async def recent_replies(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Slice[AccountEvent]:
    """The replies an account sent, newest first: its ``reply`` timeline events (text in
    ``message``, null once past its retention; see :func:`tgfleet.account.runtime.reply_event`
    for ``code`` and ``details``). The API's twin is ``GET
    /api/v1/accounts/{id}/events?kind=reply``."""
    return await list_events(session, account_id, cursor=cursor, limit=limit, kind=REPLY)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one :func:`prune` removed."""

    traffic_minutes: int
    reply_texts: int


async def prune(
    session: AsyncSession, *, reply_text_retention: timedelta, now: datetime | None = None
) -> Pruned:
    """Delete the traffic older than :data:`TRAFFIC_RETENTION` and blank the reply texts
    older than ``reply_text_retention`` (zero: every text). Idempotent: several API
    processes may run it at once, the second finds nothing left."""
    now = now or utcnow()
    # Whole minutes: the oldest minute a full-retention window shows is kept.
    minutes = await TrafficRepository(session).delete_before(minute_of(now) - TRAFFIC_RETENTION)
    texts = await AccountEventRepository(session).blank_messages(REPLY, now - reply_text_retention)
    return Pruned(traffic_minutes=minutes, reply_texts=texts)
