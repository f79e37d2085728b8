"""Reads never wait behind writes (issue 14 item 11): read units of work, their upgrade to a
write, the write gate, and the HTTP requests that use them, on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.factories import user_with_role
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.kit.db import (
    DatabaseUnavailable,
    WriteInReadOnlyTransaction,
    create_engine,
    create_sessionmaker,
    unit_of_work,
)
from tgfleet.kit.http import DbSession, reads_only
from tgfleet.models import AuditRecord, Role

# Long enough that a request which waits for the lock cannot finish inside WAIT_LIMIT.
BUSY_TIMEOUT_MS = 30_000
WAIT_LIMIT = 3.0
CONTEXT = AuditContext(actor="cli:test")
SRC = Path(__file__).resolve().parents[2] / "src" / "tgfleet"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_engine(db_url, sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS)
    yield made
    await made.dispose()


@pytest.fixture
def maker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


class HeldWrite:
    """A write transaction held open in a task until ``release()``: another process's
    writer (its own engine, so not behind this process's write gate) or this one's."""

    def __init__(self, maker: async_sessionmaker[AsyncSession]) -> None:
        self._maker = maker
        self._holding = asyncio.Event()
        self._release = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _hold(self) -> None:
        async with unit_of_work(self._maker) as session:
            session.add(Role(name="held", description="", builtin=False, permissions=[]))
            await session.flush()
            await audit_service.record(session, CONTEXT, action="test.held", target="t")
            self._holding.set()
            await self._release.wait()

    async def __aenter__(self) -> HeldWrite:
        self._task = asyncio.create_task(self._hold())
        async with asyncio.timeout(WAIT_LIMIT):
            await self._holding.wait()
        return self

    async def release(self) -> None:
        self._release.set()
        assert self._task is not None
        async with asyncio.timeout(WAIT_LIMIT):
            await self._task

    async def __aexit__(self, *_: object) -> None:
        await self.release()


async def roles_named(maker: async_sessionmaker[AsyncSession], name: str) -> int:
    async with unit_of_work(maker, deferred=True) as session:
        found = await session.scalar(select(func.count()).where(Role.name == name))
    return int(found or 0)


async def recorded_actions(maker: async_sessionmaker[AsyncSession]) -> list[str]:
    """The actions of this module's audit records, in chain order."""
    async with unit_of_work(maker, deferred=True) as session:
        found = await session.scalars(
            select(AuditRecord.action)
            .where(AuditRecord.action.like("test.%"))
            .order_by(AuditRecord.seq)
        )
        return list(found.all())


class TestReadUnitOfWork:
    async def test_read_does_not_wait_for_a_held_write(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A read unit of work answers while another connection holds an uncommitted write
        (on SQLite: the write lock), and sees the data as it was before that write."""
        async with HeldWrite(maker):
            async with asyncio.timeout(WAIT_LIMIT), unit_of_work(maker, deferred=True) as session:
                held = await session.scalar(
                    select(func.count()).select_from(Role).where(Role.name == "held")
                )
            assert held == 0

    async def test_read_that_writes_after_another_commit(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A read whose snapshot another writer has since moved past can still write (SQLite
        would refuse an in-place upgrade with SQLITE_BUSY at once); both writes and their
        audit records are kept, the chain in order."""
        async with unit_of_work(maker, deferred=True) as reader:
            assert (await reader.scalar(select(func.count()).select_from(Role)) or 0) > 0
            async with unit_of_work(maker) as writer:
                writer.add(Role(name="first", description="", builtin=False, permissions=[]))
                await audit_service.record(writer, CONTEXT, action="test.first", target="t")
            reader.add(Role(name="second", description="", builtin=False, permissions=[]))
            await audit_service.record(reader, CONTEXT, action="test.second", target="t")
        assert await roles_named(maker, "first") == 1
        assert await roles_named(maker, "second") == 1
        assert await recorded_actions(maker) == ["test.first", "test.second"]

    async def test_read_that_writes_waits_for_the_lock_holder(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A read that starts writing while another writer holds the lock waits for it (no
        deadlock, no SQLITE_BUSY), then appends to the audit chain after it."""

        async def audited_read() -> None:
            async with unit_of_work(maker, deferred=True) as session:
                await session.scalar(select(func.count()).select_from(Role))
                await audit_service.record(session, CONTEXT, action="test.read", target="t")

        held = HeldWrite(maker)
        async with held:
            reading = asyncio.create_task(audited_read())
            done, _ = await asyncio.wait({reading}, timeout=0.5)
            assert not done, "the read wrote past a held write lock"
        async with asyncio.timeout(WAIT_LIMIT):
            await reading
        assert await recorded_actions(maker) == ["test.held", "test.read"]

    async def test_snapshot_refuses_writes(self, maker: async_sessionmaker[AsyncSession]) -> None:
        """A ``read_only`` unit of work refuses a write on both databases, and keeps nothing."""

        async def sneak() -> None:
            async with unit_of_work(maker, read_only=True) as session:
                session.add(Role(name="sneaky", description="", builtin=False, permissions=[]))
                await session.flush()

        with pytest.raises((WriteInReadOnlyTransaction, DBAPIError)):
            await sneak()
        assert await roles_named(maker, "sneaky") == 0


class TestWriteGate:
    async def test_concurrent_writers_all_commit(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Forty writers and forty readers at once on one engine (a pool of 15 on SQLite):
        every writer commits and every reader answers; none times out or sees SQLITE_BUSY."""

        async def write(n: int) -> None:
            async with unit_of_work(maker) as session:
                session.add(Role(name=f"w{n}", description="", builtin=False, permissions=[]))
                await audit_service.record(session, CONTEXT, action="test.write", target=f"{n}")

        async def read() -> int:
            async with unit_of_work(maker, deferred=True) as session:
                return int(await session.scalar(select(func.count()).select_from(Role)) or 0)

        async with asyncio.timeout(30):
            results = await asyncio.gather(
                *(write(n) for n in range(40)), *(read() for _ in range(40))
            )
        assert all(isinstance(count, int) for count in results[40:])
        async with unit_of_work(maker, deferred=True) as session:
            written = await session.scalar(
                select(func.count()).select_from(Role).where(Role.name.like("w%"))
            )
        assert written == 40

    async def test_a_long_moving_queue_is_served_a_stuck_one_refused(self, db_url: str) -> None:
        """SQLite: writers queue in order and each is served although the whole queue takes
        several busy timeouts (it keeps moving); a writer behind one that holds the lock past
        the busy timeout gets DatabaseUnavailable (503), and nothing of it is kept."""
        if not db_url.startswith("sqlite"):
            pytest.skip("the write gate is SQLite's")
        engine = create_engine(db_url, sqlite_busy_timeout_ms=300)
        maker = create_sessionmaker(engine)
        order: list[int] = []

        async def write(n: int) -> None:
            async with unit_of_work(maker) as session:
                order.append(n)
                session.add(Role(name=f"q{n}", description="", builtin=False, permissions=[]))
                await session.flush()
                await asyncio.sleep(0.1)  # a slow write: the queue takes ~1 s, 3 timeouts

        try:
            async with asyncio.timeout(30):
                tasks = []
                for n in range(10):
                    tasks.append(asyncio.create_task(write(n)))
                    await asyncio.sleep(0)  # arrival order = n
                await asyncio.gather(*tasks)
            assert order == list(range(10))
            async with HeldWrite(maker):

                async def late() -> None:
                    async with unit_of_work(maker) as session:
                        session.add(
                            Role(name="late", description="", builtin=False, permissions=[])
                        )

                with pytest.raises(DatabaseUnavailable):
                    await late()
            assert await roles_named(maker, "late") == 0
        finally:
            await engine.dispose()


# ----------------------------------------------------------------------------- HTTP


class TestRequests:
    @pytest.fixture
    def settings(self, db_url: str, tmp_path: Path) -> Settings:
        """Settings of ``app`` and ``client`` with a long busy timeout: a request that waits for
        the lock cannot answer inside WAIT_LIMIT (the default 5 s would answer 503 within a
        slow test)."""
        return make_settings(db_url, tmp_path / "data", sqlite_busy_timeout_ms=BUSY_TIMEOUT_MS)

    async def test_get_answers_while_another_process_holds_the_write_lock(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """GET /api/v1/accounts answers 200 at once while another connection (another
        process's engine) holds an open write transaction; it used to wait for the lock and
        answer 503 when the busy timeout ran out."""
        viewer = await user_with_role(client, app.state.sessionmaker, app.state.security, "viewer")
        async with HeldWrite(create_sessionmaker(engine)):
            async with asyncio.timeout(WAIT_LIMIT):
                answer = await client.get("/api/v1/accounts", headers=viewer.headers)
            assert answer.status_code == 200, answer.text

    async def test_refused_get_is_audited_once_the_writer_commits(
        self, app: FastAPI, client: httpx.AsyncClient, engine: AsyncEngine
    ) -> None:
        """A GET that must write (a refusal's audit record) waits for a held write lock
        instead of failing, answers 403 once the writer commits, and its record is kept."""
        viewer = await user_with_role(client, app.state.sessionmaker, app.state.security, "viewer")
        held = HeldWrite(create_sessionmaker(engine))
        async with held:
            refused = asyncio.create_task(
                client.get("/api/v1/vault/status", headers=viewer.headers)
            )
            done, _ = await asyncio.wait({refused}, timeout=0.5)
            if app.state.engine.dialect.name == "sqlite":
                assert not done, "the refusal was audited past a held write lock"
        async with asyncio.timeout(WAIT_LIMIT):
            answer = await refused
        assert answer.status_code == 403, answer.text
        maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
        async with unit_of_work(maker, deferred=True) as session:
            denied = await session.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "auth.denied", AuditRecord.actor == "user:viewer-user")
            )
        assert denied == 1

    async def test_reads_only_post_does_not_wait_for_the_write_lock(
        self, app: FastAPI, engine: AsyncEngine
    ) -> None:
        """A POST route marked ``reads_only`` starts as a read like a GET; an unmarked POST
        waits for the write lock."""
        probe = FastAPI()
        probe.state.components = app.state.components

        @probe.post("/marked")
        @reads_only
        async def marked(session: DbSession) -> int:
            return int(await session.scalar(text("SELECT count(*) FROM role")) or 0)

        @probe.post("/plain")
        async def plain(session: DbSession) -> int:
            return int(await session.scalar(text("SELECT count(*) FROM role")) or 0)

        transport = httpx.ASGITransport(app=probe)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://probe") as http,
            HeldWrite(create_sessionmaker(engine)),
        ):
            async with asyncio.timeout(WAIT_LIMIT):
                assert (await http.post("/marked")).status_code == 200
            plain_call = asyncio.create_task(http.post("/plain"))
            done, _ = await asyncio.wait({plain_call}, timeout=0.5)
            if app.state.engine.dialect.name == "sqlite":
                assert not done, "an unmarked POST did not take the write lock up front"
        async with asyncio.timeout(WAIT_LIMIT):
            assert (await plain_call).status_code == 200


ENDPOINT_MODULES = sorted(SRC.glob("*/endpoints.py"))


class TestHandlers:
    @pytest.mark.parametrize("path", ENDPOINT_MODULES, ids=lambda path: path.parent.name)
    def test_handlers_do_not_commit(self, path: Path) -> None:
        """The request's unit of work commits, never a handler part-way (the vault's imports
        and rotation and the playbooks' dry run used to end the request's transaction)."""
        tree = ast.parse(path.read_text())
        calls = [
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"commit", "rollback"}
        ]
        assert calls == []
