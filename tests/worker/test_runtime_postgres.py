"""The runtime's database side on PostgreSQL: the same fleet, replies and commands as on
SQLite (``test_runtime``), against the production database."""

from __future__ import annotations

import pytest

from tests.worker.conftest import FleetFactory, wait_for
from tgfleet.account import commands as account_commands
from tgfleet.account import service as account_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work

pytestmark = [
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
    pytest.mark.timeout(120),
]


async def test_a_fleet_runs_answers_and_obeys_commands_on_postgres(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=3, groups=2, enable=[0])
    await fleet.wait_states("online")
    group = fleet.world.groups[0]
    member = fleet.member_of(group)
    await fleet.control.post_message(group.id, member.id, "help, please")

    async def replied() -> bool:
        return len(await fleet.sent(0)) >= 1

    await wait_for(replied)
    async with unit_of_work(fleet.sessionmaker) as session:
        await account_commands.control(
            session, AuditContext(actor="test"), fleet.account_id("fleet_0002"), "stop"
        )
    await fleet.wait_states({"fleet_0002": "stopped", "fleet_0001": "online"})
    async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
        listing = await account_service.list_accounts(
            session, cursor=None, states=["online"], with_counts=True
        )
    assert listing.counts is not None
    assert listing.counts["online"] == 2
    assert listing.counts["stopped"] == 1
    assert len(await fleet.sent(0)) == 1
