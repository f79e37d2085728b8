"""Replies across real worker processes on PostgreSQL (issue 13): own accounts, one
responder and limits hold fleet-wide, through kills, restarts and a database outage.

Three ``tgfleet worker`` processes share 30 accounts in three groups (a basic group, a
supergroup, a basic group; every account in every group). Two groups use a playbook with
open limits, the third one capped at ``group_hourly: 10``; in both the reply itself contains
the trigger word, so any reply to a fleet account would start a chain. Simulated members
post through the sandbox's control API; what the fleet sent is read from the sandbox
(``reply_to_origin``: which message a reply answered; ``reply_to_sender``: whose it was).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.e2e.conftest import ClusterFactory
from tests.e2e.harness import PG_PORT, Cluster, describe
from tests.factories import help_playbook
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import PROBES

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

NAMES = ["w1", "w2", "w3"]
CAP = 10
OPEN = help_playbook("more help is coming, {{ sender.first_name }}", responders="one")
CAPPED = help_playbook("help is here, {{ sender.first_name }}", group_hourly=CAP, responders="one")


class Traffic:
    """Member messages posted into the cluster's groups, and what answered them."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.fleet_ids = {a.id for a in cluster.world.accounts}
        self.groups = list(cluster.world.groups)
        self.origins: dict[int, int] = {}  # origin id -> world group id
        self.posted_at: dict[int, float] = {}

    async def post(self, count: int, *, start: int = 0, per_second: float = 40.0) -> None:
        began = time.monotonic()
        for n in range(start, start + count):
            group = self.groups[n % len(self.groups)]
            members = [m for m in group.members if m not in self.fleet_ids]
            member = members[n % len(members)]
            before = time.time()
            answer = await self.cluster.control.post_message(
                group.id, member, f"need help with {n} please"
            )
            origin = int(answer["origin_id"])
            self.origins[origin] = group.id
            self.posted_at[origin] = before
            ahead = began + (n - start + 1) / per_second - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the posts, not synchronisation

    async def replies(self) -> list[dict[str, Any]]:
        stats = await self.cluster.control.stats()
        return [
            {**message, "account": name}
            for name, sent in stats["messages_sent"].items()
            for message in sent
        ]

    async def decided(self) -> int:
        """Deliveries every worker has decided on (sent or suppressed), as flushed."""
        async with self.cluster.engine.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT sum(replies_sent), sum(replies_suppressed) FROM account_status")
                )
            ).one()
        return int(row[0] or 0) + int(row[1] or 0)

    async def per_minute_and_totals(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The fleet's traffic summed over its minutes, and the accounts' running totals of
        the same counts, read in one snapshot (every status batch writes both at once)."""
        async with self.cluster.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT (SELECT sum(received) FROM traffic_minute),"
                        " (SELECT sum(sent) FROM traffic_minute),"
                        " (SELECT sum(messages_received) FROM account_status),"
                        " (SELECT sum(replies_sent) FROM account_status)"
                    )
                )
            ).one()
        counts = [int(value or 0) for value in row]
        return (counts[0], counts[1]), (counts[2], counts[3])


async def _settled_cluster(make_cluster: ClusterFactory, **options: Any) -> tuple[Cluster, Traffic]:
    cluster = await make_cluster(
        accounts=30,
        groups=3,
        members=3,
        playbooks={"open": OPEN, "capped": CAPPED},
        assignment=None,
        **options,
    )
    await asyncio.gather(*(cluster.start_worker(n) for n in NAMES))
    await cluster.wait_split(NAMES, 60)
    return cluster, Traffic(cluster)


def _counts(replies: list[dict[str, Any]]) -> Counter[int | None]:
    return Counter(m["reply_to_origin"] for m in replies)


async def _wait(predicate: Any, within: float, what: str) -> None:
    try:
        async with asyncio.timeout(within):
            while not await predicate():  # noqa: ASYNC110 - polls other processes
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"not {what} within {within} s") from None


@pytest.mark.timeout(240)
async def test_three_workers_answer_every_member_message_exactly_once(
    make_cluster: ClusterFactory,
) -> None:
    """200 member messages over three workers: in the open groups each is answered exactly
    once fleet-wide; the capped group gets exactly 10 replies; no reply answers a fleet
    account (no chains); no session is used twice. The three workers' status batches add to
    the same traffic minutes: their sums are the accounts' totals, none lost."""
    cluster, traffic = await _settled_cluster(make_cluster, ttl=15.0)
    capped_group = traffic.groups[1].id  # seed_fleet assigns the playbooks in turn
    await traffic.post(200)
    replies_total = 0

    async def all_decided() -> bool:
        nonlocal replies_total
        replies_total = len(await traffic.replies())
        # each member message reaches 30 accounts, each reply the 29 others
        return await traffic.decided() >= 200 * 30 + replies_total * 29

    await _wait(all_decided, 90, "every delivery decided")
    replies = await traffic.replies()
    counts = _counts(replies)
    open_origins = [o for o, g in traffic.origins.items() if g != capped_group]
    capped_origins = [o for o, g in traffic.origins.items() if g == capped_group]
    assert {o: counts[o] for o in open_origins} == dict.fromkeys(open_origins, 1)
    assert sum(counts[o] for o in capped_origins) == CAP
    assert max(counts[o] for o in capped_origins) == 1
    assert len(replies) == len(open_origins) + CAP
    assert not [m for m in replies if m["reply_to_sender"] in traffic.fleet_ids]

    async def replies_counted() -> bool:
        _, totals = await traffic.per_minute_and_totals()
        return totals[1] == len(replies)

    await _wait(replies_counted, 10, "every reply counted")  # the senders' last batches
    per_minute, totals = await traffic.per_minute_and_totals()
    assert per_minute == totals
    assert per_minute[1] == len(replies)
    snapshot = await cluster.snapshot()
    assert not snapshot.duplicate_use, snapshot.duplicate_use
    questions = await _metric_sum(cluster, "tgfleet_reply_gate_questions_total")
    latencies = sorted(
        m["at"] - traffic.posted_at[m["reply_to_origin"]]
        for m in replies
        if m["reply_to_origin"] in traffic.posted_at
    )
    print(
        f"3 workers: {len(open_origins)} open-group messages answered once each, "
        f"capped group {CAP} of {len(capped_origins)}; reply latency p50 "
        f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
        f"{questions:.0f} gate questions for {len(replies)} replies"
    )


@pytest.mark.timeout(300)
async def test_kill_9_and_a_restart_mid_burst_answer_nothing_twice(
    make_cluster: ClusterFactory,
) -> None:
    """While 200 messages arrive, w2 is killed with SIGKILL and w3 restarted (SIGTERM,
    start again): no message is answered twice, the capped group stays at 10 at most, and
    the sandbox never sees a session used twice. The fleet settles again and answers."""
    cluster, traffic = await _settled_cluster(make_cluster, ttl=6.0)
    capped_group = traffic.groups[1].id
    burst = asyncio.create_task(traffic.post(200, per_second=25.0))
    await _wait(lambda: _posted(traffic, 60), 30, "60 posted")
    await cluster.workers["w2"].kill()
    await _wait(lambda: _posted(traffic, 120), 30, "120 posted")
    status = await cluster.workers["w3"].terminate()
    assert status == 0, cluster.workers["w3"].tail()
    await cluster.start_worker("w3")
    await burst
    await cluster.start_worker("w2")
    await cluster.wait(lambda s: s.all_served(), 60, "all served again")
    # A last message per open group, answered once the fleet has caught up.
    sentinels = Traffic(cluster)
    sentinels.groups = [g for g in traffic.groups if g.id != capped_group]
    await sentinels.post(2, start=1000)

    async def sentinels_answered() -> bool:
        counts = _counts(await traffic.replies())
        return all(counts[o] >= 1 for o in sentinels.origins)

    await _wait(sentinels_answered, 60, "the sentinel messages answered")
    replies = await traffic.replies()
    counts = _counts(replies)
    twice = {o: n for o, n in counts.items() if o is not None and n > 1}
    assert not twice, twice
    capped = sum(counts[o] for o, g in traffic.origins.items() if g == capped_group)
    assert capped <= CAP
    assert not [m for m in replies if m["reply_to_sender"] in traffic.fleet_ids]
    answered = sum(1 for o in traffic.origins if counts[o] == 1)
    snapshot = await cluster.snapshot()
    assert not snapshot.duplicate_use, describe(snapshot)
    print(
        f"kill -9 + restart mid-burst: {answered} of {len(traffic.origins)} member messages "
        f"answered, none twice; capped group {capped}"
    )


async def _posted(traffic: Traffic, count: int) -> bool:
    return len(traffic.origins) >= count


@pytest.mark.timeout(240)
async def test_database_away_10s_stops_replies_and_they_resume(
    make_cluster: ClusterFactory,
) -> None:
    """The workers reach PostgreSQL through a proxy that is cut for 10 s during traffic:
    nothing is sent while the limits cannot be checked (counted ``limit_unavailable``), and
    messages after the line is back are answered. TTL 90 s, so no worker fences itself: a
    worker fences TTL/2 (45 s) after its last renewal, which came at most TTL/3 (30 s)
    before the cut; with TTL 30 s a cut just before a renewal fenced the clients (10 + 10 s
    > 15 s) and the messages posted while they reconnected were never delivered."""
    proxy = TcpProxy(target_port=PG_PORT)
    await proxy.start()
    cluster, traffic = await _settled_cluster(make_cluster, ttl=90.0, via_proxy=proxy)
    open_group = traffic.groups[0]
    traffic.groups = [open_group]
    await traffic.post(5)
    await _wait(lambda: _answered(traffic, 5), 30, "the first 5 answered")

    await proxy.pause()
    cut = time.time()
    await traffic.post(20, start=100, per_second=4.0)  # 5 s of traffic while away
    during = dict(traffic.origins)
    away_until = cut + 10.0
    await asyncio.sleep(max(0.0, away_until - time.time()))  # keep the line cut 10 s
    await proxy.resume()
    back = time.time()
    sent_while_away = [m for m in await traffic.replies() if cut <= m["at"] < back]
    assert not sent_while_away, sent_while_away

    unavailable = int(
        await _metric_sum(cluster, "tgfleet_replies_suppressed_total", reason="limit_unavailable")
    )
    assert unavailable >= len(during) - 5, unavailable  # one per message, on its asker

    await cluster.wait(lambda s: s.all_served(), 30, "every account served after the outage")
    later = Traffic(cluster)
    later.groups = [open_group]
    await later.post(5, start=200)
    await _wait(lambda: _answered(later, 5, source=traffic), 30, "answered after the outage")
    print(
        f"database away 10 s: {len(during) - 5} messages unanswered "
        f"({unavailable} limit_unavailable), none sent; answering again after it came back"
    )
    assert all(cluster.workers[n].alive() for n in NAMES)


async def _metric_sum(cluster: Cluster, name: str, **labels: str) -> float:
    """A counter summed over every worker's /metrics (with these label values)."""
    total = 0.0
    async with httpx.AsyncClient(timeout=10) as http:
        for worker in NAMES:
            port = (await cluster.workers[worker].wait_line(PROBES, 5))[1]
            exposition = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            total += sum(
                sample.value
                for family in text_string_to_metric_families(exposition)
                for sample in family.samples
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
            )
    return total


async def _answered(traffic: Traffic, count: int, source: Traffic | None = None) -> bool:
    counts = _counts(await (source or traffic).replies())
    return sum(1 for o in traffic.origins if counts[o] >= 1) >= count
