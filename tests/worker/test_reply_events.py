"""A reply sent through the sandbox is recorded: a ``reply`` event with the text the group
received, its group, the message it answered and the playbook rule, and the fleet's
traffic of the minute (one message received, one reply sent), on both databases."""

from __future__ import annotations

import pytest

from tests.worker.conftest import FleetFactory, wait_for
from tgfleet.account import activity
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountGroup

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True),
    pytest.mark.timeout(120),
]


async def test_a_sent_reply_is_stored_with_the_text_the_group_received(
    make_fleet: FleetFactory,
) -> None:
    fleet = await make_fleet(accounts=1, groups=1, enable=[0])
    await fleet.wait_states("online")
    group = fleet.world.groups[0]
    sender = fleet.member_of(group)
    posted = await fleet.control.post_message(group.id, sender.id, "can someone help me?")
    account_id = fleet.account_id("fleet_0001")
    world_account = next(a for a in fleet.world.accounts if a.username == "fleet_0001")

    async def recorded() -> bool:
        return bool(await fleet.events("fleet_0001", "reply"))

    await wait_for(recorded)
    (delivered,) = await fleet.sent(0)
    (event,) = await fleet.events("fleet_0001", "reply")
    assert event.message == delivered["text"] == f"Happy to help, {sender.first_name}!"
    async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
        setting = await session.get(AccountGroup, (account_id, fleet.chat_id(0)))
        replies = await activity.recent_replies(session, account_id)
    assert setting is not None
    assert event.code == "template"
    assert event.details == {
        "chat_id": fleet.chat_id(0),
        "chat_title": setting.title,
        "reply_to": posted["message_ids"][str(world_account.id)],
        "playbook_id": str(fleet.seeded.playbook_ids["test"]),
        "playbook_version": 1,
        "rule": "help",
        "length": len(delivered["text"]),
        "truncated": False,
    }
    assert [reply.id for reply in replies.items] == [event.id]

    async def counted() -> bool:
        async with unit_of_work(fleet.sessionmaker, read_only=True) as session:
            points = await activity.traffic(session)
        return (sum(p.received for p in points), sum(p.sent for p in points)) == (1, 1)

    await wait_for(counted)  # the counters ride in the same or the next status batch
