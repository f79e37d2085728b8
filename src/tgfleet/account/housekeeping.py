"""The API processes' housekeeping: every ``TGFLEET_HOUSEKEEPING_INTERVAL_SECONDS`` (ten
minutes) one unit of work runs :func:`tgfleet.account.activity.prune` (traffic minutes past
seven days deleted, reply texts past ``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` blanked).

Every API process runs it; the prune is idempotent, so two at once only find less to do. A
failed run is logged (``housekeeping.failed``) and the next one tries again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account.activity import Pruned, prune
from tgfleet.config import Settings
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.logging import get_logger

log = get_logger(__name__)


class Housekeeping(TaskLifecycle):
    """Prunes every interval, until stopped. The first run waits one interval too: a
    process that just started does not add writes to its start (nor to a test's)."""

    task_name = "account:housekeeping"

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._interval = settings.housekeeping_interval_seconds
        self._reply_text_retention = timedelta(days=settings.reply_text_retention_days)
        #: Completed runs (each successful :meth:`run_once`), for the tests to wait on.
        self.runs = 0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a failed run
                log.warning("housekeeping.failed", error=type(exc).__name__)

    async def run_once(self) -> Pruned:
        """One prune in its own unit of work."""
        async with unit_of_work(self._sessionmaker) as session:
            pruned = await prune(session, reply_text_retention=self._reply_text_retention)
        metrics.HOUSEKEEPING_PRUNED.labels("traffic_minutes").inc(pruned.traffic_minutes)
        metrics.HOUSEKEEPING_PRUNED.labels("reply_texts").inc(pruned.reply_texts)
        if pruned.traffic_minutes or pruned.reply_texts:
            log.info(
                "housekeeping.pruned",
                traffic_minutes=pruned.traffic_minutes,
                reply_texts=pruned.reply_texts,
            )
        self.runs += 1
        return pruned
