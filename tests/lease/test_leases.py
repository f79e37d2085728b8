"""Leases on PostgreSQL: registration and fencing epochs, claims that split under
concurrency, worker-level renewal, expiry with a grace period, release, fair share."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_fleet, register_worker
from tgfleet.account import runtime as account_runtime
from tgfleet.account.runtime import StateChange
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.lease.service import FleetShape, Registration, WorkerClock
from tgfleet.models import AccountState, AccountStatus

POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

TTL = 15.0


async def _fleet(
    sessionmaker: async_sessionmaker[AsyncSession], accounts: int, *workers: str
) -> tuple[list[uuid.UUID], list[Registration]]:
    """``accounts`` accounts desired running with their free lease rows, and ``workers``
    registered in that order."""
    ids = await make_fleet(sessionmaker, accounts, lease_rows=True)
    return ids, [await register_worker(sessionmaker, name, ttl=TTL) for name in workers]


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], who: Registration, limit: int
) -> list[uuid.UUID]:
    async with unit_of_work(sessionmaker) as session:
        return await lease_service.claim(session, who, limit=limit)


async def _reap(sessionmaker: async_sessionmaker[AsyncSession], grace: float = 5) -> int:
    async with unit_of_work(sessionmaker) as session:
        fleet = await lease_service.shape(session)
        return await lease_service.reap(session, fleet, grace)


async def _sql(sessionmaker: async_sessionmaker[AsyncSession], statement: str) -> None:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(text(statement))


@POSTGRES
async def test_registering_again_starts_a_new_epoch_that_fences_the_old_run(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await register_worker(sessionmaker, "w1", ttl=TTL)
    second = await register_worker(sessionmaker, "w1", ttl=TTL)
    assert (first.epoch, second.epoch) == (1, 2)
    async with unit_of_work(sessionmaker) as session:
        assert not await lease_service.heartbeat(session, first, TTL)  # the old run: fenced
        assert await lease_service.heartbeat(session, second, TTL)


@POSTGRES
async def test_concurrent_claims_split_the_accounts_without_overlap(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await make_fleet(sessionmaker, 300, lease_rows=True)
    # Not desired running: never claimed (their labels taken: the service numbers them).
    await make_fleet(sessionmaker, 20, running=False, exact_label=False, lease_rows=True)
    workers = [await register_worker(sessionmaker, f"w{i}", ttl=TTL) for i in range(3)]
    claims = await asyncio.gather(*(_claim(sessionmaker, w, 150) for w in workers))
    taken = [account for claim in claims for account in claim]
    assert len(taken) == len(set(taken)) == 300
    assert max(len(c) for c in claims) <= 150
    async with unit_of_work(sessionmaker) as session:
        held = [await lease_service.held(session, w) for w in workers]
        assert [len(h) for h in held] == [len(c) for c in claims]
        assert await lease_service.unassigned(session) == 0


@POSTGRES
async def test_an_expired_worker_is_taken_over_only_after_the_grace_period(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, (dead, alive) = await _fleet(sessionmaker, 10, "dead", "alive")
    assert len(await _claim(sessionmaker, dead, 10)) == 10
    assert await _claim(sessionmaker, alive, 10) == []  # held and valid
    assert await _reap(sessionmaker) == 0

    await _sql(
        sessionmaker,
        "UPDATE worker SET expires_at = now() - interval '2 seconds' WHERE id = 'dead'",
    )
    async with unit_of_work(sessionmaker) as session:
        assert await lease_service.held(session, dead) == set()  # its own check fails now
        assert await lease_service.unassigned(session) == 10
    assert await _reap(sessionmaker, grace=5) == 0  # within the grace period
    assert await _claim(sessionmaker, alive, 10) == []

    await _sql(
        sessionmaker,
        "UPDATE worker SET expires_at = now() - interval '6 seconds' WHERE id = 'dead'",
    )
    assert await _reap(sessionmaker, grace=5) == 10
    assert len(await _claim(sessionmaker, alive, 10)) == 10
    async with unit_of_work(sessionmaker) as session:
        # The dead worker coming back cannot renew an expired lease: it must register again.
        assert not await lease_service.heartbeat(session, dead, TTL)
        assert await lease_service.held(session, dead) == set()
        assert await lease_service.current_epoch(session, "dead") == dead.epoch


@POSTGRES
async def test_a_restarted_worker_takes_its_old_accounts_back_after_the_grace_period(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, (old,) = await _fleet(sessionmaker, 5, "w1")
    assert len(await _claim(sessionmaker, old, 5)) == 5
    new = await register_worker(sessionmaker, "w1", ttl=TTL)
    assert await _reap(sessionmaker, grace=5) == 0  # the old run may still be stopping
    assert await _claim(sessionmaker, new, 5) == []
    await _sql(sessionmaker, "UPDATE worker SET started_at = now() - interval '6 seconds'")
    reaped: set[tuple[str, int]] = set()
    async with unit_of_work(sessionmaker) as session:
        fleet = await lease_service.shape(session)
        assert await lease_service.reap(session, fleet, 5, skip=reaped) == 5
        assert reaped == {("w1", new.epoch)}
        assert await lease_service.reap(session, fleet, 5, skip=reaped) == 0  # once is enough
    assert len(await _claim(sessionmaker, new, 5)) == 5


@POSTGRES
async def test_release_and_deregister_hand_accounts_over_at_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids, (one, two) = await _fleet(sessionmaker, 6, "one", "two")
    assert len(await _claim(sessionmaker, one, 6)) == 6
    async with unit_of_work(sessionmaker) as session:
        assert await lease_service.release(session, one, ids[:2]) == 2
    assert sorted(await _claim(sessionmaker, two, 6)) == sorted(ids[:2])
    async with unit_of_work(sessionmaker) as session:
        assert await lease_service.release(session, one) == 4
        await lease_service.deregister(session, one)
    assert len(await _claim(sessionmaker, two, 6)) == 4
    async with unit_of_work(sessionmaker) as session:
        views = {w.id: w for w in await lease_service.list_workers(session)}
        holders = await lease_service.holders(session, ids)
    assert (views["one"].alive, views["one"].held) == (False, 0)
    assert (views["two"].alive, views["two"].held) == (True, 6)
    assert set(holders.values()) == {"two"}


def _change(
    account: uuid.UUID, state: AccountState, previous: AccountState, worker: str
) -> StateChange:
    return StateChange(
        account_id=account,
        state=state,
        previous=previous,
        at=utcnow(),
        worker_id=None if state == AccountState.STOPPED else worker,
        source=worker,
    )


@POSTGRES
async def test_a_late_batch_from_the_previous_holder_never_overwrites_the_new_holders_status(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The interleaving seen once in CI: ``one`` starts and hands the account over, ``two``
    claims it and records it online, then ``one``'s batch (starting, stopping, stopped)
    lands. The row must still say online on ``two``."""
    [account], (one, two) = await _fleet(sessionmaker, 1, "one", "two")
    assert await _claim(sessionmaker, one, 1) == [account]
    async with unit_of_work(sessionmaker) as session:
        await lease_service.release(session, one, [account])
    assert await _claim(sessionmaker, two, 1) == [account]
    async with unit_of_work(sessionmaker) as session:
        await account_runtime.apply(
            session,
            [
                _change(account, AccountState.STARTING, AccountState.STOPPED, "two"),
                _change(account, AccountState.ONLINE, AccountState.STARTING, "two"),
            ],
            lease_holder="two",
        )
    async with unit_of_work(sessionmaker) as session:
        await account_runtime.apply(
            session,
            [
                _change(account, AccountState.STARTING, AccountState.STOPPED, "one"),
                _change(account, AccountState.STOPPING, AccountState.STARTING, "one"),
                _change(account, AccountState.STOPPED, AccountState.STOPPING, "one"),
            ],
            lease_holder="one",
        )
    async with unit_of_work(sessionmaker) as session:
        status = await session.get(AccountStatus, account)
        assert status is not None
        assert (status.state, status.worker_id) == (AccountState.ONLINE, "two")
        # Without the lease rule the same late start would have taken the row (the bug).
        await account_runtime.apply(
            session, [_change(account, AccountState.STARTING, AccountState.ONLINE, "one")]
        )
        assert (status.state, status.worker_id) == (AccountState.STARTING, "one")


@POSTGRES
async def test_claims_and_renewals_are_a_few_statements_whatever_the_count(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _, (worker,) = await _fleet(sessionmaker, 2000, "w")
    statements: list[str] = []
    async with unit_of_work(sessionmaker) as session:
        engine = session.get_bind()

        def count(*_args: object) -> None:
            statements.append("x")

        event.listen(engine, "before_cursor_execute", count)
        try:
            assert len(await lease_service.claim(session, worker, limit=2000)) == 2000
            claimed = len(statements)
            assert await lease_service.heartbeat(session, worker, TTL)
            renewed = len(statements) - claimed
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert claimed <= 2
    assert renewed == 1


def _clocks(*rows: tuple[str, int, bool, float, float]) -> tuple[WorkerClock, ...]:
    return tuple(WorkerClock(*row) for row in rows)


def test_shares_add_up_to_the_fleet_within_capacity() -> None:
    three = FleetShape(
        _clocks(("a", 1, True, 10, 99), ("b", 1, True, 12, 99), ("c", 1, True, 14, 99)), 301
    )
    assert [three.share_of(w, 1000) for w in ("a", "b", "c")] == [101, 100, 100]
    assert three.leader == "a"
    two = FleetShape(_clocks(("a", 1, True, 10, 99), ("b", 1, True, 10, 99)), 300)
    assert two.share_of("b", 100) == 100  # capacity caps it
    assert FleetShape((), 10).share_of("new", 50) == 10  # alone, not yet listed


def test_the_leader_knows_whom_to_reap_and_when() -> None:
    fleet = FleetShape(
        _clocks(
            ("a", 1, True, 10, 99),  # the leader
            ("b", 1, True, 4, 99),  # expires in 4 s: reapable in 4 + grace
            ("c", 1, True, -1, 99),  # expired 1 s ago: within the grace
            ("d", 1, True, -3, 99),  # expired 3 s ago: reapable now
            ("e", 3, True, 12, 5),  # re-registered 5 s ago: its old epochs' leases go
            ("f", 2, True, 12, 1),  # re-registered 1 s ago: not yet
            ("g", 1, False, -9000, 99),  # drained long ago: nothing left to reap
        ),
        0,
    )
    assert fleet.workers == ("a", "b", "e", "f")
    assert fleet.reapable(2.0) == (["d"], [("e", 3)])
    assert fleet.next_reap_in("a", 2.0) == 1.0  # c, at its expiry + grace
