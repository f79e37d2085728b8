"""The account runtime end to end: real Telethon clients run by the ``Supervisor`` against
the sandbox, sessions from the vault, replies from a playbook, faults over the control API.

These run on SQLite only (the embedded default ``tgfleet run`` uses); the worker's queries
also run on PostgreSQL in ``test_runtime_postgres``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.worker.conftest import Fleet, FleetFactory, wait_for
from tgfleet.account import commands as account_commands
from tgfleet.account import service as account_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountGroup

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
    pytest.mark.timeout(120),
]

CONTEXT_ACTOR = "test"


async def test_a_matching_message_gets_exactly_one_reply_only_in_enabled_groups(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=3, groups=2, enable=[0])
    await fleet.wait_states("online")
    enabled, disabled = fleet.world.groups[0], fleet.world.groups[1]
    sender = fleet.member_of(enabled)

    await fleet.control.post_message(enabled.id, sender.id, "can someone help me?")
    await wait_for(lambda: _count(fleet, 0, 1))
    other = fleet.member_of(disabled)
    await fleet.control.post_message(disabled.id, other.id, "help please")
    await asyncio.sleep(1.5)  # time enough for a reply that must not come

    replies = await fleet.sent(0)
    assert len(replies) == 1, replies
    # The reply itself says "help": the other accounts see it and must not answer it.
    assert replies[0]["text"] == f"Happy to help, {sender.first_name}!"
    assert await fleet.sent(1) == []

    async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
        account = await account_service.get_account(session, fleet.account_id("fleet_0002"))
    world_account = next(a for a in fleet.world.accounts if a.username == "fleet_0002")
    assert (account.tg_user_id, account.username) == (world_account.id, "fleet_0002")


async def test_a_burst_yields_no_more_replies_than_the_limits(make_fleet: FleetFactory) -> None:
    playbook = """
rules:
  - name: help
    when: {keywords: [help]}
    reply: {templates: ["On it."]}
    limits: {min_interval_seconds: 0, account_hourly: 2, group_hourly: 5}
"""
    fleet = await make_fleet(accounts=3, groups=1, playbook=playbook)
    await fleet.wait_states("online")
    group = fleet.world.groups[0]
    members = [m for m in fleet.world.members if m.id in group.members]
    for index in range(100):
        await fleet.control.post_message(
            group.id, members[index % len(members)].id, f"help {index}"
        )
    await asyncio.sleep(2.0)
    replies = await fleet.sent(0)
    # group_hourly 5 caps the group; account_hourly 2 x 3 accounts would allow 6.
    assert 1 <= len(replies) <= 5
    per_account: dict[str, int] = {}
    for reply in replies:
        per_account[reply["account"]] = per_account.get(reply["account"], 0) + 1
    assert max(per_account.values()) <= 2


async def test_flood_wait_is_honoured_and_the_pending_reply_is_sent_once(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=2, groups=1)
    await fleet.wait_states("online")
    await fleet.flood_wait_next_send("fleet_0001", 5, "hello @fleet_0001")
    await fleet.wait_states({"fleet_0001": "online"}, within=10)
    await wait_for(lambda: _count(fleet, 0, 1))
    await asyncio.sleep(0.5)
    replies = await fleet.sent(0)
    assert [r["account"] for r in replies] == ["fleet_0001"]

    changes = await fleet.events("fleet_0001", "state")
    entered = next(e for e in changes if e.state == "flood_wait")
    left = next(e for e in changes if e.previous_state == "flood_wait" and e.state == "online")
    waited = (left.at - entered.at).total_seconds()
    # Honoured: not left before the 5 s Telegram asked for (less the flood's own send and
    # the status flush); the upper bound only catches a wait forgotten, not a loaded machine.
    assert 4.0 <= waited <= 8.0, waited
    assert entered.code == "FLOOD_WAIT"
    assert replies[0]["at"] >= entered.at.timestamp() + 4.0


async def test_a_revoked_session_is_quarantined_and_never_reconnects(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=2, groups=1)
    await fleet.wait_states("online")
    group = fleet.world.groups[0]
    member = fleet.member_of(group)
    await fleet.control.add_fault("session_revoked", account="fleet_0002")
    started = time.monotonic()
    await fleet.control.post_message(group.id, member.id, "hey @fleet_0002")
    await fleet.wait_states({"fleet_0002": "quarantined", "fleet_0001": "online"}, within=5)
    assert time.monotonic() - started < 2.0
    status = await fleet.status("fleet_0002")
    assert status is not None
    assert status.reason == "session_revoked"
    assert status.last_error_code == "SESSION_REVOKED"

    opened = (await fleet.control.stats())["opened"].get("fleet_0002", 0)
    await fleet.control.clear_faults()
    await fleet.control.drop("fleet_0001")  # the rest of the fleet keeps moving meanwhile
    await asyncio.sleep(30)
    stats = await fleet.control.stats()
    assert stats["opened"].get("fleet_0002", 0) == opened
    assert stats["connections"].get("fleet_0002", 0) == 0
    assert (await fleet.states())["fleet_0002"] == "quarantined"
    assert (await fleet.states())["fleet_0001"] == "online"


async def test_an_operator_restart_lifts_a_quarantine(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(accounts=1, groups=1)
    await fleet.wait_states("online")
    await fleet.control.add_fault("auth_key_unregistered", account="fleet_0001", count=1)
    await fleet.control.drop("fleet_0001")
    await fleet.wait_states("quarantined", within=10)
    await asyncio.sleep(1.0)
    assert (await fleet.states())["fleet_0001"] == "quarantined"  # the worker leaves it alone

    async with unit_of_work(fleet.sessionmaker) as session:
        await account_commands.control(
            session, _context(), fleet.account_id("fleet_0001"), "restart"
        )
    await fleet.wait_states("online", within=5)


async def test_a_group_error_switches_that_group_off(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(accounts=1, groups=2)
    await fleet.wait_states("online")
    blocked, fine = fleet.world.groups[0], fleet.world.groups[1]
    await fleet.control.add_fault("chat_write_forbidden", group=blocked.id)
    member = fleet.member_of(blocked)
    await fleet.control.post_message(blocked.id, member.id, "help")

    async def disabled() -> bool:
        async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
            row = await session.get(
                AccountGroup, (fleet.account_id("fleet_0001"), fleet.chat_id(0))
            )
        return row is not None and not row.enabled

    await wait_for(disabled, within=5)
    events = await fleet.events("fleet_0001", "group_disabled")
    assert events[0].code == "CHAT_WRITE_FORBIDDEN"
    other = fleet.member_of(fine)
    await fleet.control.post_message(fine.id, other.id, "help")
    await wait_for(lambda: _count(fleet, 1, 1))
    assert (await fleet.states())["fleet_0001"] == "online"


async def _count(fleet: Fleet, group_index: int, at_least: int) -> bool:
    return len(await fleet.sent(group_index)) >= at_least


def _context() -> AuditContext:
    return AuditContext(actor=CONTEXT_ACTOR)


async def test_a_storm_of_drops_recovers_within_the_retry_budget(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(
        accounts=5, groups=1, worker_retry_budget=20, worker_retry_refill_per_second=2.0
    )
    await fleet.wait_states("online")
    assert fleet.supervisor is not None
    budget = fleet.supervisor.context.budget
    opened_before = (await fleet.control.stats())["connections_opened"]
    names = list(fleet.seeded.account_ids)
    storm_started = time.monotonic()
    while time.monotonic() - storm_started < 30:
        for name in names:
            await fleet.control.drop(name)
        await asyncio.sleep(2)
    storm = time.monotonic() - storm_started
    recovered = await fleet.wait_states("online", within=30)

    attempts = budget.taken_total
    allowed = 20 + 2.0 * (storm + recovered)
    assert attempts <= allowed, (attempts, allowed)
    opened = (await fleet.control.stats())["connections_opened"] - opened_before
    assert opened <= allowed + len(names)
    assert attempts >= len(names)  # it did reconnect, paying the budget
    stats = await fleet.control.stats()
    assert all(stats["connections"].get(name) == 1 for name in names)
    assert not any(stats["duplicate_use"].values())


async def test_stop_and_start_through_the_api_within_a_second(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(accounts=2, groups=1, run_worker=False, start=True)
    # The defaults of `tgfleet run` (reconcile every 0.5 s), not the fast test settings.
    settings = fleet.app.state.settings.model_copy(
        update={"worker_reconcile_seconds": 0.5, "worker_status_flush_seconds": 0.2}
    )
    from tgfleet.worker.supervisor import Supervisor

    supervisor = Supervisor(settings, fleet.sessionmaker, fleet.app.state.vault)
    await supervisor.start()
    try:
        await fleet.wait_states("online")
        import httpx

        from tests.factories import user_with_role

        transport = httpx.ASGITransport(app=fleet.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            credentials = await user_with_role(
                http, fleet.sessionmaker, fleet.app.state.security, "operator"
            )
            headers = credentials.headers
            account_id = fleet.account_id("fleet_0001")
            response = await http.post(f"/api/v1/accounts/{account_id}/stop", headers=headers)
            assert response.status_code == 200, response.text
            took = await fleet.wait_states({"fleet_0001": "stopped", "fleet_0002": "online"}, 3)
            assert took < 1.0
            assert (await fleet.control.stats())["connections"].get("fleet_0001", 0) == 0
            response = await http.post(f"/api/v1/accounts/{account_id}/start", headers=headers)
            assert response.status_code == 200, response.text
            took = await fleet.wait_states({"fleet_0001": "online"}, 3)
            assert took < 1.0
    finally:
        await supervisor.stop()


async def test_a_restarted_process_resumes_the_desired_states(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(accounts=3, groups=1)
    await fleet.wait_states("online")
    async with unit_of_work(fleet.sessionmaker) as session:
        await account_commands.control(session, _context(), fleet.account_id("fleet_0003"), "stop")
    await fleet.wait_states({"fleet_0003": "stopped"})
    assert fleet.supervisor is not None
    await fleet.supervisor.stop()
    assert set((await fleet.states()).values()) == {"stopped"}
    assert not any((await fleet.control.stats())["connections"].values())

    from tgfleet.worker.supervisor import Supervisor

    again = Supervisor(fleet.app.state.settings, fleet.sessionmaker, fleet.app.state.vault)
    await again.start()
    try:
        await fleet.wait_states(
            {"fleet_0001": "online", "fleet_0002": "online", "fleet_0003": "stopped"}
        )
    finally:
        await again.stop()


async def test_one_hanging_account_delays_no_other_and_shutdown_is_bounded(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=3, groups=1, worker_request_timeout_seconds=20.0)
    await fleet.wait_states("online")
    group = fleet.world.groups[0]
    member = fleet.member_of(group)
    # fleet_0001 answers nothing for a minute; fleet_0003 cannot connect at all.
    await fleet.control.set_latency("fleet_0001", 60)
    await fleet.control.refuse("fleet_0003", 600)
    await fleet.control.drop("fleet_0003")
    await fleet.control.post_message(group.id, member.id, "hi @fleet_0001")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await fleet.control.post_message(group.id, member.id, "hi @fleet_0002")

    async def answered() -> bool:
        return any(r["account"] == "fleet_0002" for r in await fleet.sent(0))

    await wait_for(answered, within=5)
    assert time.monotonic() - started < 1.0
    assert (await fleet.states())["fleet_0003"] == "reconnecting"

    assert fleet.supervisor is not None
    stopping = time.monotonic()
    await fleet.supervisor.stop()
    assert time.monotonic() - stopping < 10.0
    assert not any((await fleet.control.stats())["connections"].values())


LLM_PLAYBOOK = """
rules:
  - name: assistant
    when: {mention: true}
    reply:
      llm:
        system_prompt: "You are {{ account.label }}, the helpful assistant of {{ group.title }}."
        max_tokens: 50
        timeout_seconds: 1
        fallback: "Sorry {{ sender.first_name }}, a colleague will answer soon."
    limits: {min_interval_seconds: 0, account_hourly: 1000, group_hourly: 1000}
"""


async def test_llm_replies_and_falls_back_with_a_recorded_reason(
    make_fleet: FleetFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.fakes.openai_server import FakeChatServer

    async with FakeChatServer(reply="Our opening hours are 9 to 5.") as llm:
        fleet = await make_fleet(
            accounts=1,
            groups=1,
            playbook=LLM_PLAYBOOK,
            llm_base_url=llm.base_url,
            llm_api_key="sk-test-secret",
            llm_model="test-model",
        )
        await fleet.wait_states("online")
        group = fleet.world.groups[0]
        member = fleet.member_of(group)

        await fleet.control.post_message(group.id, member.id, "@fleet_0001 when are you open?")
        await wait_for(lambda: _count(fleet, 0, 1))
        assert (await fleet.sent(0))[0]["text"] == "Our opening hours are 9 to 5."
        request = llm.requests[0]
        assert request["model"] == "test-model"
        assert request["max_tokens"] == 50
        assert "when are you open?" in request["messages"][-1]["content"]
        assert llm.auth_headers[0] == "Bearer sk-test-secret"

        llm.status = 503
        await fleet.control.post_message(group.id, member.id, "@fleet_0001 hello?")
        await wait_for(lambda: _count(fleet, 0, 2))
        llm.status = 200
        llm.delay = 3.0  # longer than the rule's 1 s timeout
        await fleet.control.post_message(group.id, member.id, "@fleet_0001 anyone?")
        await wait_for(lambda: _count(fleet, 0, 3), within=10)

        fallback = f"Sorry {member.first_name}, a colleague will answer soon."
        assert [m["text"] for m in (await fleet.sent(0))[1:]] == [fallback, fallback]

        async def recorded() -> bool:
            return len(await fleet.events("fleet_0001", "llm_fallback")) >= 2

        await wait_for(recorded)
        reasons = [e.code for e in await fleet.events("fleet_0001", "llm_fallback")]
        assert reasons == ["llm_http_503", "llm_timeout"]
    captured = capfd.readouterr()
    assert "llm_timeout" in captured.out + captured.err  # the log was captured...
    assert "sk-test-secret" not in captured.out + captured.err  # ...and holds no key


async def test_re_importing_the_session_lifts_a_quarantine(make_fleet: FleetFactory) -> None:
    import httpx

    from tests.factories import user_with_role

    fleet = await make_fleet(accounts=2, groups=1)
    await fleet.wait_states("online")
    await fleet.control.add_fault("user_deactivated_ban", account="fleet_0001")
    await fleet.control.drop("fleet_0001")
    await fleet.wait_states({"fleet_0001": "quarantined"}, within=10)
    status = await fleet.status("fleet_0001")
    assert status is not None
    assert (status.reason, status.last_error_code) == ("banned", "USER_DEACTIVATED_BAN")
    await fleet.control.clear_faults()  # Telegram lifted the ban
    await asyncio.sleep(1.0)
    assert (await fleet.states())["fleet_0001"] == "quarantined"

    transport = httpx.ASGITransport(app=fleet.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        operator = await user_with_role(
            http, fleet.sessionmaker, fleet.app.state.security, "operator"
        )
        path = fleet.extra["world_dir"] / "fleet_0001.session"
        response = await http.put(
            f"/api/v1/accounts/{fleet.account_id('fleet_0001')}/session",
            content=path.read_bytes(),
            params={"name": "fleet_0001.session"},
            headers=operator.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2
        assert response.json()["same_session"] is True
        other = await http.put(
            f"/api/v1/accounts/{fleet.account_id('fleet_0002')}/session",
            content=path.read_bytes(),
            headers=operator.headers,
        )
        assert other.status_code == 409  # that session belongs to fleet_0001
    await fleet.wait_states("online", within=5)


async def test_a_flood_wait_while_connecting_ends_online(make_fleet: FleetFactory) -> None:
    fleet = await make_fleet(accounts=1, groups=1)
    await fleet.wait_states("online")
    await fleet.control.add_fault(
        "flood_wait", account="fleet_0001", method="users.getUsers", seconds=3, count=1
    )
    await fleet.control.drop("fleet_0001")
    await fleet.wait_states("flood_wait", within=5)
    waited = await fleet.wait_states("online", within=10)
    assert 1.5 <= waited <= 5.0, waited
    group = fleet.world.groups[0]
    member = fleet.member_of(group)
    await fleet.control.post_message(group.id, member.id, "help")
    await wait_for(lambda: _count(fleet, 0, 1))
