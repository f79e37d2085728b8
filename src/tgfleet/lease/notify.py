"""Waking the workers: an operator's change, freed leases or a changed fleet identity is
announced on one PostgreSQL channel when the transaction commits; each worker listens on it
(``worker/listener.py``). SQLite's one process polls instead."""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

#: PostgreSQL channel on which account commands wake the workers (payload unused).
COMMAND_CHANNEL: Final = "tgfleet_accounts"


#: Notification payloads: an operator's change (workers reconcile and recount the fleet),
#: or leases freed (workers only try to claim).
COMMAND: Final = "command"
LEASES_FREED: Final = "leases"
#: An account's Telegram identity was learned or changed: workers reload the fleet's ids.
FLEET_CHANGED: Final = "fleet"


async def workers(session: AsyncSession, kind: str = COMMAND) -> None:
    """Wake every worker when this transaction commits (PostgreSQL ``NOTIFY``; SQLite's one
    process polls). Workers then reconcile within their loop, well inside a second."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT pg_notify(:channel, :kind)"), {"channel": COMMAND_CHANNEL, "kind": kind}
        )
