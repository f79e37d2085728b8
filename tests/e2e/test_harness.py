"""The e2e harness's options: more groups and members, own playbooks assigned per group,
extra worker settings, and a member's post answered by a real worker, as ``/stats`` shows it
(the reply names the member's message by the origin id the post answered)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.conftest import ClusterFactory
from tests.e2e.harness import SILENT_PLAYBOOK, Cluster
from tests.factories import help_playbook
from tests.harness import PROBES, free_port
from tgfleet.sandbox.world import BASIC_GROUP_IDS, SUPERGROUP_IDS

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

HELP_PLAYBOOK = help_playbook()


async def sent_in(cluster: Cluster, group_id: int) -> list[dict[str, Any]]:
    stats = await cluster.control.stats()
    return [
        m for sent in stats["messages_sent"].values() for m in sent if m["group_id"] == group_id
    ]


@pytest.mark.timeout(90)
async def test_options_and_a_reply_seen_in_stats(make_cluster: ClusterFactory) -> None:
    """Two groups of three members each (mint lays out a basic group, then a supergroup),
    the help playbook in the first and the silent one in the second, the metrics port from
    ``extra_env``: a member's "help" in the first group gets exactly one reply, to that
    message and that member; the same words in the second group get none."""
    helped, silent = BASIC_GROUP_IDS.start, SUPERGROUP_IDS.start + 1
    metrics_port = free_port()
    cluster = await make_cluster(
        accounts=1,
        ttl=15.0,
        groups=2,
        members=3,
        playbooks={"help": HELP_PLAYBOOK, "silent": SILENT_PLAYBOOK},
        assignment={helped: "help", silent: "silent"},
        extra_env={"TGFLEET_WORKER_METRICS_PORT": str(metrics_port)},
    )
    assert [(g.id, g.kind) for g in cluster.world.groups] == [
        (helped, "basic"),
        (silent, "supergroup"),
    ]
    assert len(cluster.world.members) == 9
    assert cluster.chat_ids == {helped: -helped, silent: int(f"-100{silent}")}
    assert set(cluster.playbook_ids) == {"help", "silent"}
    (account,) = cluster.world.accounts
    assert set(cluster.account_ids) == {account.username}

    worker = await cluster.start_worker("w1")
    assert int((await worker.wait_line(PROBES, 30))[1]) == metrics_port
    await cluster.wait(lambda s: s.all_served(), 45, "the account online")

    members = {
        group.id: [m for m in group.members if m in cluster.world.members_by_id]
        for group in cluster.world.groups
    }
    await cluster.control.post_message(silent, members[silent][0], "help, anyone?")
    asker = members[helped][1]
    posted = await cluster.control.post_message(helped, asker, "help, anyone?")
    async with asyncio.timeout(30):
        while not (replies := await sent_in(cluster, helped)):  # noqa: ASYNC110 - polls the sandbox
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # room for a second reply, or one in the silent group
    assert await sent_in(cluster, helped) == replies
    (reply,) = replies
    first_name = cluster.world.members_by_id[asker].first_name
    assert reply["text"] == f"Happy to help, {first_name}!"
    assert (reply["reply_to_origin"], reply["reply_to_sender"]) == (posted["origin_id"], asker)
    assert reply["origin_id"] > posted["origin_id"]
    assert await sent_in(cluster, silent) == []
