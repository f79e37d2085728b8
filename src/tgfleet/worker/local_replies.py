"""One process (SQLite): saving the reply gate's decisions so they survive a restart.

The :class:`~tgfleet.playbook.gate.LocalGate` decides in memory; what it decided since the
last save (reply windows, claims, claims gone) is written every :data:`REPLY_SAVE_SECONDS`
and once more on shutdown. What could not be written is kept for the next save.
"""

from __future__ import annotations

import asyncio
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.playbook.gate import CLAIM_TTL_SECONDS, LocalGate

log = get_logger(__name__)

#: How often the reply gate's decisions are saved.
REPLY_SAVE_SECONDS: Final = 1.0


async def save_replies(sessionmaker: async_sessionmaker[AsyncSession], gate: LocalGate) -> None:
    """Write what ``gate`` decided since the last save (nothing when nothing changed)."""
    changes = gate.changes()
    if not changes:
        return
    try:
        async with unit_of_work(sessionmaker) as session:
            await lease_service.save_replies(
                session,
                changes.windows,
                [
                    (
                        c.key,
                        c.account_id,
                        c.chat_id,
                        c.claimed_at,
                        c.claimed_at + CLAIM_TTL_SECONDS,
                    )
                    for c in changes.claims
                ],
                changes.gone,
            )
    except BaseException:
        gate.unsaved(changes)
        raise


async def save_replies_forever(
    sessionmaker: async_sessionmaker[AsyncSession], gate: LocalGate
) -> None:
    """:func:`save_replies` every :data:`REPLY_SAVE_SECONDS` until cancelled."""
    while True:
        await asyncio.sleep(REPLY_SAVE_SECONDS)
        try:
            await save_replies(sessionmaker, gate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: kept for the next round
            log.warning("worker.replies_not_saved", error=type(exc).__name__)
