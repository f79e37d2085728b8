"""The audit log feeds its Prometheus metrics: records written, appends timed, failures.
Real database (both backends), real services.

Counters are process-wide, so every test reads the samples it cares about before acting
and asserts what it added (`Watch`), never an absolute value.
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.audit.test_service import TRIGGERS, append, execute
from tests.prometheus_watch import Watch, plain
from tgfleet.audit import service as audit_service
from tgfleet.audit.exceptions import AuditWriteFailed
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work

CONTEXT = AuditContext(actor="cli:test")


class TestAudit:
    async def test_each_appended_record_counts_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Two single appends and a batch of three: five records, three timed appends."""
        watch = Watch(
            writes=plain("tgfleet_audit_writes_total"),
            failures=plain("tgfleet_audit_write_failures_total"),
            appends=plain("tgfleet_audit_write_duration_seconds_count"),
        )
        await append(sessionmaker, 2)
        async with unit_of_work(sessionmaker) as session:
            await audit_service.record_many(
                session,
                CONTEXT,
                [audit_service.AuditEntry(action="test.batch", target=f"t:{i}") for i in range(3)],
            )
            await audit_service.record_many(session, CONTEXT, [])  # nothing to append
        assert watch.delta() == {"writes": 5, "failures": 0, "appends": 3}

    async def test_a_failed_append_counts_a_failure_and_no_write(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A trigger refusing audit inserts makes the append raise: one failure, no write."""
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)
        watch = Watch(
            writes=plain("tgfleet_audit_writes_total"),
            failures=plain("tgfleet_audit_write_failures_total"),
            appends=plain("tgfleet_audit_write_duration_seconds_count"),
        )
        with pytest.raises(AuditWriteFailed):
            await append(sessionmaker, 1)
        assert watch.delta() == {"writes": 0, "failures": 1, "appends": 1}
