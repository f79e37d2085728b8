"""The reply gate, fleet-wide: one responder, the limits, the fleet's own accounts.

The same behaviours are checked against the in-memory gate of one process (``LocalGate``)
and against ``FleetGate`` on PostgreSQL, where each gate instance stands for one worker
process with its own memory: what one worker decided must bind the others, a restarted
worker (a new instance) and a worker that never heard of an account. The tests that only
the shared gate can pass (restarts, accounts known only to the database, an outage) run on
PostgreSQL alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import help_playbook
from tests.fakes.tcp_proxy import TcpProxy
from tests.worker.conftest import FleetFactory, wait_for
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.models import Account
from tgfleet.playbook.gate import Admission, Limits, LocalGate, ReplyGate, ReplyRequest
from tgfleet.worker import reply_gate
from tgfleet.worker.listener import CommandListener
from tgfleet.worker.reply_gate import FleetGate
from tgfleet.worker.supervisor import Supervisor

pytestmark = pytest.mark.timeout(60)

OPEN = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=1000, probability=1.0)
CHAT = -1001
OTHER_CHAT = -1002
MEMBER = 5_000_001
_keys = itertools.count()


@dataclass
class Fleet:
    """Accounts in the database and ``gates(n)``: n gates deciding for one fleet."""

    kind: str
    accounts: list[uuid.UUID]
    engine: AsyncEngine | None
    made: list[FleetGate] = field(default_factory=list)
    local: LocalGate = field(default_factory=LocalGate)

    def gates(self, count: int) -> list[ReplyGate]:
        if self.kind == "local":  # one process: one gate serves every account
            return [self.local] * count
        assert self.engine is not None
        # No refusal cache: what one worker released, the others see at once (the cache
        # has its own test).
        made = [FleetGate(_url(self.engine), set(), refusal_cache_seconds=0) for _ in range(count)]
        self.made += made
        return list(made)


def _url(engine: AsyncEngine, *, port: int | None = None) -> str:
    url = engine.url if port is None else engine.url.set(port=port)
    return url.render_as_string(hide_password=False)


def ask(
    account: uuid.UUID,
    message: str,
    *,
    chat: int = CHAT,
    limits: Limits = OPEN,
    responders: Literal["one", "all"] = "one",
    sender: int | None = MEMBER,
) -> ReplyRequest:
    return ReplyRequest(
        message_key=message,
        account_key=str(account),
        account_id=account,
        chat_id=chat,
        sender_id=sender,
        limits=limits,
        responders=responders,
    )


def message() -> str:
    return f"{CHAT}:{next(_keys)}"


@pytest.fixture
async def pg_fleet(db_url: str) -> AsyncIterator[Fleet]:
    engine = create_engine(db_url, pool_size=2, max_overflow=2)
    accounts = [uuid.uuid4() for _ in range(6)]
    async with unit_of_work(create_sessionmaker(engine)) as session:
        session.add_all(
            Account(id=a, label=f"gate-{i}", tg_user_id=7_000_000 + i)
            for i, a in enumerate(accounts)
        )
    fleet = Fleet("postgres", accounts, engine)
    try:
        yield fleet
    finally:
        for gate in fleet.made:
            await gate.aclose()
        await engine.dispose()


async def concurrently(*calls: Awaitable[Admission]) -> list[Admission]:
    return list(await asyncio.gather(*calls))


# ------------------------------------------------------------------ both gates


class GateBehaviour:
    """What every gate guarantees; run by TestLocalGate and TestFleetGate below."""

    async def test_exactly_one_account_answers_each_message_whatever_gate_it_asks(
        self, fleet: Fleet
    ) -> None:
        """Six accounts on three gates ask at once for each of 30 messages: one admitted
        per message, the five others told another account answers it."""
        gates = fleet.gates(3)
        for _ in range(30):
            key = message()
            answers = await concurrently(
                *(gates[i % 3].admit(ask(a, key)) for i, a in enumerate(fleet.accounts))
            )
            reasons = Counter(answer.reason for answer in answers)
            assert reasons == {"admitted": 1, "claimed_by_other": 5}, reasons

    async def test_the_same_account_never_answers_the_same_message_twice(
        self, fleet: Fleet
    ) -> None:
        """Asked again (a reconnect, a hand-over to another gate), the account that
        answered is told ``duplicate``; with ``responders: all`` every account answers
        once and only once."""
        first, second = fleet.gates(2)
        key = message()
        assert (await first.admit(ask(fleet.accounts[0], key))).admitted
        again = await second.admit(ask(fleet.accounts[0], key))
        assert again.reason == "duplicate"
        key = message()
        everyone = await concurrently(
            *(first.admit(ask(a, key, responders="all")) for a in fleet.accounts)
        )
        assert all(answer.admitted for answer in everyone)
        repeats = await concurrently(
            *(second.admit(ask(a, key, responders="all")) for a in fleet.accounts)
        )
        assert {answer.reason for answer in repeats} == {"duplicate"}

    async def test_group_hourly_holds_exactly_across_gates(self, fleet: Fleet) -> None:
        """``group_hourly: 10`` and 40 messages answered by every account from three gates
        at once: exactly 10 replies in that group; the other group keeps its own budget."""
        limits = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=10, probability=1)
        gates = fleet.gates(3)
        answers = await concurrently(
            *(
                gates[i % 3].admit(ask(a, message(), limits=limits, responders="all"))
                for i, a in enumerate(fleet.accounts * 7)
            )
        )
        reasons = Counter(answer.reason for answer in answers)
        assert reasons["admitted"] == 10, reasons
        assert reasons["limit:group_hourly"] == 32, reasons
        other = await gates[1].admit(ask(fleet.accounts[0], message(), chat=OTHER_CHAT))
        assert other.admitted

    async def test_account_hourly_and_min_interval_bind_the_account(self, fleet: Fleet) -> None:
        """``account_hourly: 3`` refuses the fourth reply of that account anywhere, not
        another account's; ``min_interval_seconds`` refuses the next reply in the same group
        only."""
        hourly = Limits(min_interval_seconds=0, account_hourly=3, group_hourly=1000, probability=1)
        first, second = fleet.gates(2)
        me, other = fleet.accounts[0], fleet.accounts[1]
        for gate in (first, second, first):
            assert (await gate.admit(ask(me, message(), limits=hourly))).admitted
        refused = await second.admit(ask(me, message(), limits=hourly))
        assert refused.reason == "limit:account_hourly"
        assert refused.detail == "3 replies in the last hour"
        assert (await second.admit(ask(other, message(), limits=hourly))).admitted

        spaced = Limits(
            min_interval_seconds=600, account_hourly=100, group_hourly=100, probability=1
        )
        third = fleet.accounts[2]
        assert (await first.admit(ask(third, message(), limits=spaced))).admitted
        soon = await second.admit(ask(third, message(), limits=spaced))
        assert soon.reason == "limit:min_interval"
        assert soon.detail is not None
        assert soon.detail.startswith("next reply here in ")
        elsewhere = await second.admit(ask(third, message(), chat=OTHER_CHAT, limits=spaced))
        assert elsewhere.admitted

    async def test_a_released_reservation_gives_the_budget_back(self, fleet: Fleet) -> None:
        """A reply not sent gives its budget back (another account may then answer in that
        group), and its claim unless it may have been delivered (``keep_claim``)."""
        one = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=1, probability=1)
        first, second = fleet.gates(2)
        key = message()
        admitted = await first.admit(ask(fleet.accounts[0], key, limits=one))
        assert admitted.ticket is not None
        assert (await second.admit(ask(fleet.accounts[1], message(), limits=one))).reason == (
            "limit:group_hourly"
        )
        await first.release(admitted.ticket)
        retaken = await second.admit(ask(fleet.accounts[1], key, limits=one))
        assert retaken.admitted, retaken
        assert retaken.ticket is not None
        await second.release(retaken.ticket, keep_claim=True)
        kept = await first.admit(ask(fleet.accounts[2], key, limits=one))
        assert kept.reason == "claimed_by_other"
        fresh = await first.admit(ask(fleet.accounts[2], message(), limits=one))
        assert fresh.admitted, fresh


class TestLocalGate(GateBehaviour):
    """One process (SQLite, the demo): one in-memory gate serves every account."""

    @pytest.fixture
    def fleet(self) -> Fleet:
        return Fleet("local", [uuid.uuid4() for _ in range(6)], None)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestFleetGate(GateBehaviour):
    """Several workers: each gate instance is one worker process with its own memory."""

    @pytest.fixture
    def fleet(self, pg_fleet: Fleet) -> Fleet:
        return pg_fleet


# ------------------------------------------------------------------ PostgreSQL only


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestFleetWide:
    async def test_a_new_worker_brings_no_fresh_budget(self, pg_fleet: Fleet) -> None:
        """A gate made after a restart or a hand-over knows nothing in memory, and still
        refuses: the budget of the last hour is PostgreSQL's."""
        limits = Limits(min_interval_seconds=30, account_hourly=2, group_hourly=1000, probability=1)
        (before,) = pg_fleet.gates(1)
        me = pg_fleet.accounts[0]
        assert (await before.admit(ask(me, message(), limits=limits))).admitted
        assert (await before.admit(ask(me, message(), chat=OTHER_CHAT, limits=limits))).admitted
        (after,) = pg_fleet.gates(1)
        refused = await after.admit(ask(me, message(), chat=-1003, limits=limits))
        assert refused.reason == "limit:account_hourly"
        assert (await after.admit(ask(me, message(), limits=limits))).reason in {
            "limit:min_interval",
            "limit:account_hourly",
        }

    async def test_the_window_slides_over_the_last_hour(self, pg_fleet: Fleet) -> None:
        """Replies older than an hour no longer count; younger ones do."""
        limits = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=2, probability=1)
        assert pg_fleet.engine is not None
        async with pg_fleet.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO reply_window (key, sent_at) VALUES (:key, ARRAY["
                    "extract(epoch FROM now()) - 3601, extract(epoch FROM now()) - 3599])"
                ),
                {"key": f"g:{CHAT}"},
            )
        (gate,) = pg_fleet.gates(1)
        assert (await gate.admit(ask(pg_fleet.accounts[0], message(), limits=limits))).admitted
        refused = await gate.admit(ask(pg_fleet.accounts[1], message(), limits=limits))
        assert refused.reason == "limit:group_hourly"

    async def test_a_window_pruned_while_waiting_still_counts_the_reply(
        self, pg_fleet: Fleet
    ) -> None:
        """The leader's sweep deletes a quiet group's window rows while an admission waits
        for the account's row: the admission creates them again, so the reply counts (a
        second account is then refused by ``group_hourly: 1``)."""
        assert pg_fleet.engine is not None
        me, other = pg_fleet.accounts[0], pg_fleet.accounts[1]
        quiet = [f"a:{me}", f"g:{CHAT}", f"p:{me}:{CHAT}"]
        async with pg_fleet.engine.begin() as connection:
            for key in quiet:
                await connection.execute(
                    text(
                        "INSERT INTO reply_window (key, sent_at) "
                        "VALUES (:key, ARRAY[extract(epoch FROM now()) - 7200])"
                    ),
                    {"key": key},
                )
        one = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=1, probability=1)
        (gate,) = pg_fleet.gates(1)
        async with pg_fleet.engine.connect() as holder:
            await holder.execute(
                text("SELECT 1 FROM reply_window WHERE key = :key FOR UPDATE"), {"key": quiet[0]}
            )
            pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            admission = asyncio.create_task(gate.admit(ask(me, message(), limits=one)))

            async def blocked() -> bool:
                async with pg_fleet.engine.connect() as probe:  # type: ignore[union-attr]
                    waiting = await probe.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE :pid = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": pid},
                    )
                    return bool(waiting.scalar_one())

            async with asyncio.timeout(10):
                while not await blocked():  # noqa: ASYNC110 - another backend's lock wait
                    await asyncio.sleep(0.01)
            async with pg_fleet.engine.begin() as sweep:  # what the sweep deletes meanwhile
                await sweep.execute(
                    text("DELETE FROM reply_window WHERE key = ANY(:keys)"),
                    {"keys": quiet[1:]},
                )
            await holder.rollback()
            assert (await admission).admitted
        refused = await gate.admit(ask(other, message(), limits=one))
        assert refused.reason == "limit:group_hourly"

    async def test_an_account_only_the_database_knows_is_never_answered(
        self, pg_fleet: Fleet
    ) -> None:
        """A gate whose worker never heard of an account (it runs elsewhere, or learned
        its identity a moment ago) refuses its messages: the admission reads the fleet's
        stored ids. A member is answered."""
        (gate,) = pg_fleet.gates(1)
        me = pg_fleet.accounts[0]
        from_fleet = await gate.admit(ask(me, message(), sender=7_000_004))
        assert from_fleet.reason == "from_fleet"
        assert gate.is_fleet_member(7_000_004)  # and it is remembered
        assert (await gate.admit(ask(me, message(), sender=MEMBER))).admitted

    async def test_one_question_per_worker_per_message(self, pg_fleet: Fleet) -> None:
        """Six accounts of one worker see one message: PostgreSQL is asked once; when the
        first asker is refused for a limit of its own, the next account asks and answers."""
        (gate,) = pg_fleet.gates(1)
        assert isinstance(gate, FleetGate)
        key = message()
        answers = await concurrently(*(gate.admit(ask(a, key)) for a in pg_fleet.accounts))
        assert Counter(a.reason for a in answers) == {"admitted": 1, "claimed_by_other": 5}
        assert gate.questions == 1

        tight = Limits(min_interval_seconds=0, account_hourly=1, group_hourly=1000, probability=1)
        spent = next(
            a for a, answer in zip(pg_fleet.accounts, answers, strict=True) if answer.admitted
        )
        other = next(a for a in pg_fleet.accounts if a != spent)
        key = message()
        first = asyncio.create_task(gate.admit(ask(spent, key, limits=tight)))
        await asyncio.sleep(0)  # it asks first
        second = await gate.admit(ask(other, key, limits=tight))
        assert (await first).reason == "limit:account_hourly"
        assert second.admitted, second

    async def test_a_refusal_is_remembered_a_few_seconds(self, pg_fleet: Fleet) -> None:
        """Once PostgreSQL said a group is full, the worker refuses the next messages there
        without asking (a flood costs no round trips), for at most its cache bound."""
        assert pg_fleet.engine is not None
        clock = [1000.0]
        gate = FleetGate(_url(pg_fleet.engine), set(), clock=lambda: clock[0])
        pg_fleet.made.append(gate)
        one = Limits(min_interval_seconds=0, account_hourly=1000, group_hourly=1, probability=1)
        assert (await gate.admit(ask(pg_fleet.accounts[0], message(), limits=one))).admitted
        answers = [await gate.admit(ask(a, message(), limits=one)) for a in pg_fleet.accounts]
        assert {a.reason for a in answers} == {"limit:group_hourly"}
        assert gate.questions == 2
        clock[0] += 5.01  # past the bound: asked again (and still full)
        again = await gate.admit(ask(pg_fleet.accounts[1], message(), limits=one))
        assert again.reason == "limit:group_hourly"
        assert gate.questions == 3

    async def test_fails_closed_while_the_database_is_away(self, pg_fleet: Fleet) -> None:
        """Through a cut line the gate answers ``limit_unavailable`` within its timeout
        (nothing may be sent unchecked); once the line is back it admits again."""
        assert pg_fleet.engine is not None
        url = pg_fleet.engine.url
        async with TcpProxy(target_port=url.port or 5432) as proxy:
            gate = FleetGate(_url(pg_fleet.engine, port=proxy.port), set(), timeout=1.0)
            pg_fleet.made.append(gate)
            assert (await gate.admit(ask(pg_fleet.accounts[0], message()))).admitted
            await proxy.pause()
            refused = await gate.admit(ask(pg_fleet.accounts[1], message()))
            assert refused.reason == "limit_unavailable"
            assert gate.failures >= 1
            await proxy.resume()
            assert (await gate.admit(ask(pg_fleet.accounts[1], message()))).admitted


# ------------------------------------------------------------------ one process, restarted


class TestLocalGateSurvivesARestart:
    async def test_saved_decisions_bind_the_next_run(self) -> None:
        """What a gate saved (unix times) binds a gate made after a restart, whose
        monotonic clock starts elsewhere: budget, min interval and claims."""
        wall = [1_000_000.0]
        before = LocalGate(clock=lambda: 50.0, wall_clock=lambda: wall[0])
        me, other = uuid.uuid4(), uuid.uuid4()
        limits = Limits(min_interval_seconds=60, account_hourly=2, group_hourly=1000, probability=1)
        key = message()
        assert (await before.admit(ask(me, key, limits=limits))).admitted
        assert (await before.admit(ask(me, message(), chat=OTHER_CHAT, limits=limits))).admitted
        saved = before.changes()
        assert set(saved.windows) == {
            f"a:{me}",
            f"g:{CHAT}",
            f"p:{me}:{CHAT}",
            f"g:{OTHER_CHAT}",
            f"p:{me}:{OTHER_CHAT}",
        }
        assert not before.changes()  # nothing new since

        wall[0] += 30  # restarted 30 s later; its monotonic clock reads 7 now
        after = LocalGate(clock=lambda: 7.0, wall_clock=lambda: wall[0])
        after.restore(saved)
        assert (await after.admit(ask(other, key, limits=limits))).reason == ("claimed_by_other")
        refused = await after.admit(ask(me, message(), chat=-1003, limits=limits))
        assert refused.reason == "limit:account_hourly"
        spaced = await after.admit(ask(other, message(), limits=limits))
        assert spaced.admitted  # another account is not bound by my interval

    async def test_an_hour_old_save_binds_nothing(self) -> None:
        """Decisions older than the window and the claim lifetime are not restored."""
        wall = [1_000_000.0]
        before = LocalGate(clock=lambda: 0.0, wall_clock=lambda: wall[0])
        me = uuid.uuid4()
        limits = Limits(min_interval_seconds=60, account_hourly=1, group_hourly=1, probability=1)
        key = message()
        assert (await before.admit(ask(me, key, limits=limits))).admitted
        saved = before.changes()
        wall[0] += 3601
        after = LocalGate(clock=lambda: 0.0, wall_clock=lambda: wall[0])
        after.restore(saved)
        assert (await after.admit(ask(me, key, limits=limits))).admitted


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_restarted_single_process_brings_no_fresh_budget(
    make_fleet: FleetFactory,
) -> None:
    """SQLite, one process: an account allowed one reply an hour answers, the process
    stops and a new one starts on the same database; the next message is refused by the
    limit the first run spent, and the first message is never answered again."""
    fleet = await make_fleet(accounts=1, groups=1, playbook=ONE_AN_HOUR, run_worker=False)
    group = fleet.world.groups[0]
    member = next(m for m in group.members if m not in {a.id for a in fleet.world.accounts})
    settings, vault = fleet.app.state.settings, fleet.app.state.vault

    async def run_process(text: str, until: Callable[[], Awaitable[bool]]) -> None:
        """One worker process: online, a member posts ``text``, ``until`` holds, it stops."""
        supervisor = Supervisor(settings, fleet.sessionmaker, vault)
        await supervisor.start()
        try:
            await fleet.wait_states("online", within=20)
            await fleet.control.post_message(group.id, member, text)
            await wait_for(until, within=15)
        finally:
            await supervisor.stop()

    async def answered() -> bool:
        return len(await fleet.sent()) == 1

    async def refused() -> bool:
        events = await fleet.status("fleet_0001")
        return events is not None and events.replies_suppressed >= 1

    await run_process("help one", answered)
    await run_process("help two", refused)
    assert len(await fleet.sent()) == 1


ONE_AN_HOUR = help_playbook("here to help", account_hourly=1, group_hourly=100)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestTurns:
    """``responders: one`` across workers costs one question per message: the workers take
    turns, and an admitted claim is announced to the others (LISTEN/NOTIFY)."""

    async def test_the_workers_behind_in_turn_learn_the_answer_without_asking(
        self, pg_fleet: Fleet, db_url: str
    ) -> None:
        async with contextlib.AsyncExitStack() as stack:
            gates = {}
            for name in ("wa", "wb"):
                gate = await _listening_gate(stack, pg_fleet, db_url, name)
                gates[name] = gate
            a, b = gates["wa"], gates["wb"]
            me, you = pg_fleet.accounts[0], pg_fleet.accounts[1]
            # Each answers once in the group: now each knows the other answers there (the
            # second on a message it leads, or it would wait for the first and drop it).
            assert (await a.admit(ask(me, message()))).admitted
            await _until(lambda: "wa" in b.peers(CHAT))
            assert (await b.admit(ask(you, _led_by("wb")))).admitted
            await _until(lambda: "wa" in b.peers(CHAT) and "wb" in a.peers(CHAT))

            for _ in range(10):
                key = message()
                first, second = (a, b) if _first_of(key, "wa", "wb") == "wa" else (b, a)
                asked = first.questions + second.questions
                answers = await concurrently(first.admit(ask(me, key)), second.admit(ask(you, key)))
                assert [x.reason for x in answers] == ["admitted", "claimed_by_other"]
                assert first.questions + second.questions == asked + 1  # one question
            assert a.spared + b.spared == 10

    async def test_a_silent_worker_ahead_loses_its_turn(self, pg_fleet: Fleet, db_url: str) -> None:
        """A worker that announced once but no longer answers in the group (its accounts
        went elsewhere) delays a message by one step at most, once: then it has no turn."""
        async with contextlib.AsyncExitStack() as stack:
            a = await _listening_gate(stack, pg_fleet, db_url, "wa")
            b = await _listening_gate(stack, pg_fleet, db_url, "wb", defer_step=1.0)
            assert (await a.admit(ask(pg_fleet.accounts[0], message()))).admitted
            await _until(lambda: "wa" in b.peers(CHAT))
            key = next(
                k for k in (message() for _ in range(100)) if _first_of(k, "wa", "wb") == "wa"
            )
            started = time.monotonic()
            answer = await b.admit(ask(pg_fleet.accounts[1], key))
            assert answer.admitted
            assert time.monotonic() - started >= 1.0  # it waited its turn, once
            assert "wa" not in b.peers(CHAT)
            again = next(
                k for k in (message() for _ in range(100)) if _first_of(k, "wa", "wb") == "wa"
            )
            started = time.monotonic()
            assert (await b.admit(ask(pg_fleet.accounts[1], again))).admitted
            assert time.monotonic() - started < 1.0  # no turn to wait for any more


def _led_by(worker: str) -> str:
    """A new message key whose turn order starts with ``worker`` (of wa and wb)."""
    return next(k for k in (message() for _ in range(100)) if _first_of(k, "wa", "wb") == worker)


def _first_of(key: str, *workers: str) -> str:
    return min(workers, key=lambda w: reply_gate._digest(key, w))


async def _listening_gate(
    stack: contextlib.AsyncExitStack,
    fleet: Fleet,
    db_url: str,
    name: str,
    *,
    defer_step: float = 2.0,
) -> FleetGate:
    listener: CommandListener | None = None
    gate = FleetGate(
        db_url,
        set(),
        worker_id=name,
        listening=lambda: listener is not None and listener.connected,
        defer_step=defer_step,
    )
    fleet.made.append(gate)
    listener = CommandListener(
        db_url, lambda _kind: None, {lease_service.REPLY_CHANNEL: gate.heard}
    )
    task = asyncio.create_task(listener.run())

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    await _until(lambda: listener is not None and listener.connected)
    return gate


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - state another task changes, no event
            await asyncio.sleep(0.01)
