"""Several workers on PostgreSQL, in one test process: they split the fleet, hand accounts
over on a drain and after a silent death, and no session ever runs twice (the sandbox
counts duplicate use of an auth key)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.factories import help_playbook, user_with_role
from tests.worker.conftest import Fleet, FleetFactory, wait_for
from tgfleet.account import commands as account_commands
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.worker.supervisor import Supervisor

# These tests poll live state (runners, the sandbox) that has no change notification.
# ruff: noqa: ASYNC110

pytestmark = [
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
    pytest.mark.timeout(120),
]

LEASES = {"lease_ttl_seconds": 3.0, "lease_grace_seconds": 1.5}


def _worker(fleet: Fleet, name: str) -> Supervisor:
    settings = fleet.app.state.settings
    return Supervisor(settings, fleet.sessionmaker, fleet.app.state.vault, worker_id=name)


async def _online_by(fleet: Fleet, workers: list[Supervisor]) -> dict[str, int]:
    return {w.worker_id: sum(1 for r in w.runners.values() if r.state == "online") for w in workers}


async def test_two_workers_split_the_fleet_and_a_drain_hands_over_at_once(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=10, groups=1, run_worker=False, **LEASES)
    first, second = _worker(fleet, "w1"), _worker(fleet, "w2")
    await first.start()
    await second.start()
    try:
        await fleet.wait_states("online", within=20)
        async with asyncio.timeout(20):
            while sorted((await _online_by(fleet, [first, second])).values()) != [5, 5]:
                await asyncio.sleep(0.1)

        started = time.monotonic()
        await second.stop()  # SIGTERM's path: disconnect, release, deregister
        async with asyncio.timeout(10):
            while (await _online_by(fleet, [first]))["w1"] != 10:
                await asyncio.sleep(0.05)
        handover = time.monotonic() - started
        assert handover < 5.0, handover
        await fleet.wait_states("online", within=5)
        stats = await fleet.control.stats()
        assert not any(stats["duplicate_use"].values()), stats["duplicate_use"]
    finally:
        await first.stop()
        await second.stop()


async def test_a_worker_cut_off_from_the_database_fences_itself_and_hands_over(
    make_fleet: FleetFactory, db_url: str
) -> None:
    """Worker w2 connects as its own PostgreSQL role; the role is then refused and its
    connections killed: w2 cannot renew, stops its clients at TTL/2, and w1 takes the
    accounts after expiry + grace, with no duplicate use at any point."""
    fleet = await make_fleet(accounts=6, groups=1, run_worker=False, **LEASES)
    role = f"tgfleet_cut_{os.getpid()}"
    database = make_url(db_url).database
    await _admin(
        fleet,
        f'DROP ROLE IF EXISTS "{role}"',
        f'CREATE ROLE "{role}" LOGIN',
        f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    )
    cut_url = make_url(db_url).set(username=role).render_as_string(hide_password=False)
    settings = fleet.app.state.settings.model_copy(update={"database_url": cut_url})
    engine = create_engine(cut_url, pool_size=2, max_overflow=2)
    first = _worker(fleet, "w1")
    second = Supervisor(
        settings, create_sessionmaker(engine), fleet.app.state.vault, worker_id="w2"
    )
    await first.start()
    await second.start()
    try:
        async with asyncio.timeout(20):
            while sorted((await _online_by(fleet, [first, second])).values()) != [3, 3]:
                await asyncio.sleep(0.1)
        # Both heap freezes (a full collection 5 s after the last client start) run before
        # the cut: in this test process, which holds the whole session's objects, each held
        # the event loop 1.4-1.9 s, and inside the window they made a claim take 9.4 s.
        async with asyncio.timeout(20):
            while not (first.heap_settled and second.heap_settled):
                await asyncio.sleep(0.1)
        await _admin(
            fleet,
            f'ALTER ROLE "{role}" NOLOGIN',
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE usename = '{role}' AND datname = '{database}'",
        )
        started = time.monotonic()
        async with asyncio.timeout(20):
            while second.runners:
                await asyncio.sleep(0.05)
        fenced = time.monotonic() - started
        async with asyncio.timeout(20):
            while len(first.runners) != 6:
                await asyncio.sleep(0.05)
        claimed = time.monotonic() - started
        # Connecting the three taken clients is the sandbox's and the machine's time, not
        # the hand-over's: the bound is on the claim; being online follows.
        async with asyncio.timeout(20):
            while (await _online_by(fleet, [first]))["w1"] != 6:
                await asyncio.sleep(0.05)
        assert fenced < 3.0, fenced  # TTL/2 after the last renewal, plus a tick
        assert fenced < claimed, (fenced, claimed)  # w2 let go before w1 took over
        # A liveness bound, not the safety property (that is fenced < claimed and no
        # duplicate use): TTL + grace + a renewal interval, plus 2 s for a loaded machine
        # (6.54 s was seen once in a full CI run on 2 cores).
        assert claimed < 3.0 + 1.5 + 2.0 + 2.0, claimed
        stats = await fleet.control.stats()
        assert not any(stats["duplicate_use"].values()), stats["duplicate_use"]
    finally:
        await first.stop()
        await second.stop()
        await engine.dispose()
        await _admin(fleet, f'DROP OWNED BY "{role}"', f'DROP ROLE IF EXISTS "{role}"')


async def _admin(fleet: Fleet, *statements: str) -> None:
    async with unit_of_work(fleet.sessionmaker) as session:
        for statement in statements:
            await session.execute(text(statement))


async def test_commands_arrive_by_notification_and_by_polling_when_it_drops(
    make_fleet: FleetFactory,
) -> None:
    # The default TTL (15 s, renewals every 5 s): a restarted account is claimed at once
    # because the command also wakes the lease loop, not at its next renewal.
    fleet = await make_fleet(accounts=2, groups=1, run_worker=False)
    worker = _worker(fleet, "w1")
    assert fleet.app.state.settings.lease_ttl_seconds == 15
    await worker.start()
    try:
        await fleet.wait_states("online", within=20)
        assert worker.listener is not None
        async with asyncio.timeout(10):
            while not _listening(worker):
                await asyncio.sleep(0.05)
        context = AuditContext(actor="test")
        async with unit_of_work(fleet.sessionmaker) as session:
            await account_commands.control(session, context, fleet.account_id("fleet_0001"), "stop")
        took = await fleet.wait_states({"fleet_0001": "stopped"}, within=5)
        assert took < 1.0, took
        assert worker.listener.notifications >= 1

        # The notification connection dies: polling carries the next command.
        await _admin(
            fleet,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        async with asyncio.timeout(10):
            while _listening(worker):
                await asyncio.sleep(0.02)
        async with unit_of_work(fleet.sessionmaker) as session:
            await account_commands.control(
                session, context, fleet.account_id("fleet_0001"), "start"
            )
        took = await fleet.wait_states({"fleet_0001": "online"}, within=5)
        assert took < 1.5, took
        async with asyncio.timeout(20):  # and it comes back
            while not _listening(worker):
                await asyncio.sleep(0.05)
        assert worker.listener.reconnects >= 1
    finally:
        await worker.stop()


def _listening(worker: Supervisor) -> bool:
    return worker.listener is not None and worker.listener.connected


async def test_accounts_beyond_capacity_are_unassigned_and_visible_in_the_api(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=3, groups=1, run_worker=False, worker_capacity=2, **LEASES)
    worker = _worker(fleet, "w1")
    await worker.start()
    try:
        states = await _settle(fleet, {"online": 2, "unassigned": 1})
        assert sorted(states.values()) == ["online", "online", "unassigned"]
        transport = httpx.ASGITransport(app=fleet.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            viewer = await user_with_role(
                http, fleet.sessionmaker, fleet.app.state.security, "viewer"
            )
            workers = (await http.get("/api/v1/workers", headers=viewer.headers)).json()
            accounts = (await http.get("/api/v1/accounts", headers=viewer.headers)).json()
        assert workers["unassigned"] == 1
        (only,) = workers["items"]
        assert (only["id"], only["alive"], only["accounts_held"], only["capacity"]) == (
            "w1",
            True,
            2,
            2,
        )
        holders = {a["label"]: a["holder"] for a in accounts["items"]}
        assert sorted(h or "-" for h in holders.values()) == ["-", "w1", "w1"]
        assert accounts["counts"]["unassigned"] == 1
    finally:
        await worker.stop()


async def _settle(fleet: Fleet, wanted: dict[str, int]) -> dict[str, str]:
    async with asyncio.timeout(20):
        while True:
            states = await fleet.states()
            counts: dict[str, int] = {}
            for state in states.values():
                counts[state] = counts.get(state, 0) + 1
            if counts == wanted:
                return states
            await asyncio.sleep(0.1)


ANSWER_ONCE = help_playbook("help is on its way, {{ sender.first_name }}", responders="one")


async def test_two_workers_answer_each_member_message_once_and_never_each_other(
    make_fleet: FleetFactory,
) -> None:
    """Six accounts in a basic group and a supergroup, split over two workers; the reply
    itself contains the trigger word. Every worker knows all six accounts (also the other
    worker's), each of 20 member messages is answered exactly once fleet-wide, and no
    reply answers a fleet account's message; every delivery was decided (counted sent or
    suppressed) before the counts are read."""
    fleet = await make_fleet(
        accounts=6, groups=2, members=3, playbook=ANSWER_ONCE, run_worker=False, **LEASES
    )
    workers = [_worker(fleet, "w1"), _worker(fleet, "w2")]
    for worker in workers:
        await worker.start()
    try:
        await fleet.wait_states("online", within=20)
        async with asyncio.timeout(20):
            while sorted((await _online_by(fleet, workers)).values()) != [3, 3]:
                await asyncio.sleep(0.1)
        async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
            stored = set((await session.execute(text("SELECT tg_user_id FROM account"))).scalars())
        accounts = {a.id for a in fleet.world.accounts}
        assert stored == accounts
        for worker in workers:  # each knows the other's accounts too
            assert accounts <= worker.context.fleet_ids, worker.worker_id

        origins: list[int] = []
        for n in range(20):
            group = fleet.world.groups[n % 2]
            member = [m for m in group.members if m not in accounts][n % 3]
            posted = await fleet.control.post_message(group.id, member, f"help {n} please")
            origins.append(int(posted["origin_id"]))

        async def decided() -> bool:
            async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
                sent, suppressed = (
                    await session.execute(
                        text(
                            "SELECT sum(replies_sent), sum(replies_suppressed) FROM account_status"
                        )
                    )
                ).one()
            # 20 member messages reach 6 accounts, 20 replies reach the 5 others
            return (sent or 0) + (suppressed or 0) >= 20 * 6 + 20 * 5

        await wait_for(decided, within=30)
        replies = await fleet.sent()
        answered = Counter(m["reply_to_origin"] for m in replies)
        assert {origin: answered[origin] for origin in origins} == dict.fromkeys(origins, 1)
        assert len(replies) == 20, replies
        assert not [m for m in replies if m["reply_to_sender"] in accounts]
        stats = await fleet.control.stats()
        assert not any(stats["duplicate_use"].values())
    finally:
        for worker in workers:
            await worker.stop()
