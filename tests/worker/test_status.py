"""The worker's database side without Telegram: the state machine's transition table, the
status writer's batching and its behaviour when the database refuses writes, the reconcile
rules for held accounts, batch decrypts, and the session write-back through the vault."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import telethon_string
from tgfleet.account import runtime
from tgfleet.account.runtime import StateChange, TimelineEvent, allowed
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import (
    AccountEvent,
    AccountGroup,
    AccountState,
    AccountStatus,
    AuditRecord,
    SessionSecret,
)
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.exceptions import DecryptError, SessionNotFound
from tgfleet.vault.service import Decrypted
from tgfleet.worker.status import StatusWriter
from tgfleet.worker.telegram import ClientOptions, build_client, changed_record

CONTEXT = AuditContext(actor="test")

EVENTS_DOWN = {
    "sqlite": [
        (
            "CREATE TRIGGER events_down BEFORE INSERT ON account_event "
            "BEGIN SELECT RAISE(ABORT, 'event storage unavailable'); END"
        )
    ],
    "postgresql": [
        (
            "CREATE FUNCTION events_down() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'event storage unavailable'; END $$ LANGUAGE plpgsql"
        ),
        (
            "CREATE TRIGGER events_down BEFORE INSERT ON account_event "
            "FOR EACH ROW EXECUTE FUNCTION events_down()"
        ),
    ],
}
EVENTS_UP = {
    "sqlite": ["DROP TRIGGER events_down"],
    "postgresql": ["DROP TRIGGER events_down ON account_event", "DROP FUNCTION events_down()"],
}


async def _import(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> list[uuid.UUID]:
    entries = [
        Entry(name=f"acct{seed}.txt", data=telethon_string(seed).encode()) for seed in range(count)
    ]
    results = await vault_service.import_entries(sessionmaker, app.state.vault, CONTEXT, entries)
    ids = [r.account_id for r in results if r.account_id is not None]
    assert len(ids) == count
    return ids


async def _execute(sessionmaker: async_sessionmaker[AsyncSession], statements: list[str]) -> None:
    async with unit_of_work(sessionmaker) as session:
        for statement in statements:
            await session.execute(text(statement))


# ---------------------------------------------------------------- the state machine


@pytest.mark.parametrize(
    ("previous", "state", "ok"),
    [
        (AccountState.STOPPED, AccountState.STARTING, True),
        (AccountState.STARTING, AccountState.ONLINE, True),
        (AccountState.ONLINE, AccountState.RECONNECTING, True),
        (AccountState.RECONNECTING, AccountState.ONLINE, True),
        (AccountState.ONLINE, AccountState.FLOOD_WAIT, True),
        (AccountState.FLOOD_WAIT, AccountState.ONLINE, True),
        (AccountState.ONLINE, AccountState.STOPPING, True),
        (AccountState.STOPPING, AccountState.STOPPED, True),
        (AccountState.ONLINE, AccountState.QUARANTINED, True),
        (AccountState.RECONNECTING, AccountState.ERROR, True),
        (AccountState.QUARANTINED, AccountState.STARTING, True),
        (AccountState.STOPPED, AccountState.ONLINE, False),
        (AccountState.ONLINE, AccountState.STOPPED, False),
        (AccountState.QUARANTINED, AccountState.ONLINE, False),
        (AccountState.QUARANTINED, AccountState.QUARANTINED, False),
        (AccountState.STOPPING, AccountState.ONLINE, False),
    ],
)
def test_transitions_follow_the_design(
    previous: AccountState, state: AccountState, ok: bool
) -> None:
    assert allowed(previous, state) is ok


def test_every_state_has_a_way_out_except_by_operator() -> None:
    for state in AccountState:
        reachable = {target for target in AccountState if allowed(state, target)}
        assert reachable, state


# ---------------------------------------------------------------- the writer


async def test_the_writer_batches_changes_events_counters_and_groups(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first, second = await _import(app, sessionmaker, 2)
    writer = StatusWriter(sessionmaker)
    now = utcnow()
    writer.state(
        StateChange(first, AccountState.STARTING, AccountState.STOPPED, now, "w1", restart_seq=3)
    )
    writer.state(StateChange(first, AccountState.ONLINE, AccountState.STARTING, now, "w1"))
    writer.state(
        StateChange(
            second,
            AccountState.QUARANTINED,
            AccountState.ONLINE,
            now,
            None,
            reason="session_revoked",
            error_code="SESSION_REVOKED",
            error_message="The session was revoked",
        )
    )
    writer.event(TimelineEvent(first, now, "llm_fallback", code="llm_timeout"))
    writer.count(first, messages_received=5, replies_sent=2)
    writer.count(first, messages_received=1, reconnects=1)
    writer.groups_found(first, {-3000000: "Group A", -1001500000001: "Group B"})
    assert await writer.flush()
    writer.group_off(
        first, -3000000, reason="write_forbidden", code="CHAT_WRITE_FORBIDDEN", message="no"
    )
    writer.count(first, replies_suppressed=4)
    assert await writer.flush()
    assert await writer.flush()  # nothing pending: a no-op

    async with unit_of_work(sessionmaker, read_only=True) as session:
        one = await session.get(AccountStatus, first)
        two = await session.get(AccountStatus, second)
        events = (
            (await session.execute(select(AccountEvent).order_by(AccountEvent.id))).scalars().all()
        )
        groups = {
            g.chat_id: g for g in (await session.execute(select(AccountGroup))).scalars().all()
        }
    assert one is not None
    assert two is not None
    assert (one.state, one.worker_id, one.restart_seq) == ("online", "w1", 3)
    assert (one.messages_received, one.replies_sent, one.reconnects, one.replies_suppressed) == (
        6,
        2,
        1,
        4,
    )
    assert (two.state, two.reason, two.last_error_code) == (
        "quarantined",
        "session_revoked",
        "SESSION_REVOKED",
    )
    assert [(e.kind, e.state) for e in events] == [
        ("state", "starting"),
        ("state", "online"),
        ("state", "quarantined"),
        ("llm_fallback", None),
        ("group_disabled", None),
    ]
    assert groups[-1001500000001].enabled is False  # discovered groups are opt-in
    assert groups[-3000000].disabled_reason == "write_forbidden"


async def test_the_writer_keeps_its_batch_while_the_database_refuses(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account,) = await _import(app, sessionmaker, 1)
    async with sessionmaker() as session:
        dialect = session.get_bind().dialect.name
    await _execute(sessionmaker, EVENTS_DOWN[dialect])
    writer = StatusWriter(sessionmaker)
    writer.state(StateChange(account, AccountState.STARTING, AccountState.STOPPED, utcnow(), "w1"))
    writer.count(account, replies_sent=3)
    assert not await writer.flush()
    assert not await writer.flush()
    assert writer.pending == 1
    assert writer.failures == 2
    async with unit_of_work(sessionmaker, read_only=True) as session:
        assert await session.get(AccountStatus, account) is None  # nothing half-written

    await _execute(sessionmaker, EVENTS_UP[dialect])
    writer.state(StateChange(account, AccountState.ONLINE, AccountState.STARTING, utcnow(), "w1"))
    assert await writer.flush()
    async with unit_of_work(sessionmaker, read_only=True) as session:
        status = await session.get(AccountStatus, account)
        count = await session.scalar(select(func.count()).select_from(AccountEvent))
    assert status is not None
    assert (status.state, status.replies_sent) == ("online", 3)
    assert count == 2


async def test_a_deleted_account_is_skipped_not_an_error(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    writer = StatusWriter(sessionmaker)
    ghost = uuid.uuid4()
    writer.state(StateChange(ghost, AccountState.ONLINE, AccountState.STARTING, utcnow(), "w1"))
    writer.count(ghost, replies_sent=1)
    assert await writer.flush()
    assert writer.pending == 0


async def test_a_restarted_worker_releases_only_live_states(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    online, quarantined, elsewhere = await _import(app, sessionmaker, 3)
    now = utcnow()
    async with unit_of_work(sessionmaker) as session:
        await runtime.apply(
            session,
            [
                StateChange(online, AccountState.ONLINE, AccountState.STARTING, now, "w1"),
                StateChange(quarantined, AccountState.QUARANTINED, AccountState.ONLINE, now, "w1"),
                StateChange(elsewhere, AccountState.ONLINE, AccountState.STARTING, now, "w2"),
            ],
        )
    async with unit_of_work(sessionmaker) as session:
        assert await runtime.release_stale(session, "w1") == 1
    async with unit_of_work(sessionmaker, read_only=True) as session:
        states = {a.id: a.observed_state for a in await runtime.load_desired(session)}
    assert states == {
        online: AccountState.STOPPED,
        quarantined: AccountState.QUARANTINED,
        elsewhere: AccountState.ONLINE,
    }


# ---------------------------------------------------------------- the vault side


async def test_decrypt_many_audits_each_account_once_and_reports_failures(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await _import(app, sessionmaker, 3)
    async with unit_of_work(sessionmaker) as session:
        await vault_service.erase(session, CONTEXT, ids[2])
    async with unit_of_work(sessionmaker) as session:
        before = await session.scalar(select(func.count()).select_from(AuditRecord))
        opened = await vault_service.decrypt_many(
            session, app.state.vault, CONTEXT, [*ids, uuid.uuid4()], purpose="run"
        )
        after = await session.scalar(select(func.count()).select_from(AuditRecord))
    assert isinstance(opened[ids[0]], Decrypted)
    assert isinstance(opened[ids[1]], Decrypted)
    assert isinstance(opened[ids[2]], SessionNotFound)
    assert after is not None
    assert before is not None
    assert after - before == 2  # one "session.decrypt" per decrypted account
    first = opened[ids[0]]
    assert isinstance(first, Decrypted)
    assert first.version == 1
    assert first.record.dc_id == 2


async def test_a_tampered_secret_fails_alone_and_is_marked(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    good, bad = await _import(app, sessionmaker, 2)
    async with unit_of_work(sessionmaker) as session:
        stored = await session.scalar(
            select(SessionSecret.ciphertext).where(SessionSecret.account_id == bad)
        )
        assert stored
        await session.execute(
            update(SessionSecret)
            .where(SessionSecret.account_id == bad)
            .values(ciphertext=b"\x00" * len(stored))
        )
    async with unit_of_work(sessionmaker) as session:
        opened = await vault_service.decrypt_many(
            session, app.state.vault, CONTEXT, [good, bad], purpose="run"
        )
    assert isinstance(opened[good], Decrypted)
    assert isinstance(opened[bad], DecryptError)
    async with unit_of_work(sessionmaker, read_only=True) as session:
        assert (await vault_service.secret_versions(session))[bad] == (1, "tampered")


async def test_a_changed_client_session_is_written_back_as_a_new_version(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account,) = await _import(app, sessionmaker, 1)
    async with unit_of_work(sessionmaker) as session:
        opened = await vault_service.decrypt_many(
            session, app.state.vault, CONTEXT, [account], purpose="run"
        )
    decrypted = opened[account]
    assert isinstance(decrypted, Decrypted)
    client = build_client(decrypted.record, ClientOptions(1, "x", 5.0))
    assert changed_record(client, decrypted.record) is None
    client.session.set_dc(4, "149.154.167.91", 443)  # what Telethon does on a DC switch
    changed = changed_record(client, decrypted.record)
    assert changed is not None
    assert (changed.dc_id, changed.address, changed.auth_key) == (
        4,
        "149.154.167.91",
        decrypted.record.auth_key,
    )

    async with unit_of_work(sessionmaker) as session:
        version = await vault_service.update_session(
            session, app.state.vault, CONTEXT, account, changed, expected_version=1, reason="dc"
        )
    assert version == 2
    async with unit_of_work(sessionmaker) as session:
        stale = await vault_service.update_session(
            session, app.state.vault, CONTEXT, account, changed, expected_version=1, reason="dc"
        )
        again = await vault_service.decrypt_many(
            session, app.state.vault, CONTEXT, [account], purpose="run"
        )
        audit = (
            (
                await session.execute(
                    select(AuditRecord).where(AuditRecord.action == "session.update")
                )
            )
            .scalars()
            .all()
        )
    assert stale is None  # the stored secret moved on: the older runner's copy loses
    reopened = again[account]
    assert isinstance(reopened, Decrypted)
    assert (reopened.version, reopened.record.dc_id) == (2, 4)
    assert len(audit) == 1
    assert audit[0].details["dc_id"] == 4
    assert audit[0].details["rekeyed"] is False
    assert decrypted.record.auth_key.hex() not in str(audit[0].details)


async def test_a_worker_letting_go_does_not_overwrite_the_new_holders_status(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account,) = await _import(app, sessionmaker, 1)
    now = utcnow()
    async with unit_of_work(sessionmaker) as session:
        await runtime.apply(
            session,
            [
                StateChange(
                    account, AccountState.ONLINE, AccountState.STARTING, now, "w2", source="w2"
                )
            ],
        )
        # w1's runner, fenced earlier, reports its stop after w2 took over.
        await runtime.apply(
            session,
            [
                StateChange(
                    account, AccountState.STOPPING, AccountState.ONLINE, now, "w1", source="w1"
                ),
                StateChange(
                    account, AccountState.STOPPED, AccountState.STOPPING, now, None, source="w1"
                ),
            ],
        )
    async with unit_of_work(sessionmaker, read_only=True) as session:
        status = await session.get(AccountStatus, account)
    assert status is not None
    assert (status.state, status.worker_id) == ("online", "w2")
