"""Several ``tgfleet worker`` processes on PostgreSQL against a sandbox subprocess: the fleet
splits evenly, survives kill -9, SIGTERM, a frozen process and a database outage, and no
session ever runs in two places (the sandbox's ``duplicate_use`` per account stays 0).

Everything runs as real processes (the harness: ``harness.py``, the ``make_cluster`` fixture
in ``conftest.py``): the sandbox (``tgfleet sandbox run --no-traffic``) and every worker
(``tgfleet worker --id wN``) in their own process groups, killed in the fixture's teardown
whatever happened. This process mints the world, seeds the per-test
database through the services (vault import, a playbook that never answers, every account
started), and observes from outside: valid holders from ``account_lease`` joined with
``worker`` (same epoch, not expired), what runs from ``account_status`` and the sandbox's
``/stats`` (live ``connections`` per account and ``duplicate_use``).

Lease settings, chosen so the file takes about 2-3 minutes of wall time on 2 cores (the
grace is always the default, 2 s): the split test keeps the default TTL 15 s (nothing
expires), kill -9 and the database outage use TTL 6 s (renewals every 2 s, fencing at 3 s),
the frozen worker and the 20 kill/restart cycles TTL 3 s (the smallest the settings allow:
renewals every second, fencing at 1.5 s), and SIGTERM the default 15 s, because a drain
must hand over at once whatever the renewal interval is. In-process multi-worker tests are in
``tests/worker/test_failover.py``; these add real processes, signals and a cut TCP line.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ClusterFactory
from tests.e2e.harness import PG_PORT, Snapshot, describe
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import PROBES

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.mark.timeout(120)
async def test_three_workers_split_300_accounts_evenly(make_cluster: ClusterFactory) -> None:
    """Three workers started together over 300 accounts settle at 100 ± 10 each, every
    account online exactly once; the split holds (nobody keeps trading accounts)."""
    cluster = await make_cluster(accounts=300, ttl=15.0)
    started = time.monotonic()
    await asyncio.gather(*(cluster.start_worker(f"w{i}") for i in (1, 2, 3)))

    def settled(snapshot: Snapshot) -> bool:
        held = snapshot.held()
        return snapshot.all_served() and all(
            90 <= held.get(name, 0) <= 110 for name in ("w1", "w2", "w3")
        )

    _, snapshot = await cluster.wait(settled, 90, "split 100 ± 10 with all 300 served")
    print(f"3 x 300: settled after {time.monotonic() - started:.1f} s: {snapshot.held()}")
    assert sum(snapshot.held().values()) == 300
    await asyncio.sleep(6)  # one renewal interval and more: still settled
    later = await cluster.snapshot()
    assert settled(later), describe(later)
    assert not later.duplicate_use
    # Each worker's own port: probes pass, and its gauges say what the database says.
    held = later.held()
    async with httpx.AsyncClient(timeout=10) as http:
        for name in ("w1", "w2", "w3"):
            match = await cluster.workers[name].wait_line(PROBES, 5)
            base = f"http://127.0.0.1:{match[1]}"
            assert (await http.get(f"{base}/livez")).status_code == 200
            assert (await http.get(f"{base}/readyz")).status_code == 200
            health = await http.get(f"{base}/health")
            assert health.headers["content-type"].startswith("application/health+json")
            exposition = (await http.get(f"{base}/metrics")).text
            gauges = {
                (s.name, s.labels.get("state")): s.value
                for family in text_string_to_metric_families(exposition)
                for s in family.samples
            }
            assert gauges[("tgfleet_lease_held_accounts", None)] == held[name], name
            assert gauges[("tgfleet_worker_accounts", "online")] == held[name], name
            assert gauges[("tgfleet_process_role", None)] == 1


@pytest.mark.timeout(100)
async def test_kill_9_accounts_online_on_the_others_within_ttl_plus_10s(
    make_cluster: ClusterFactory,
) -> None:
    """A worker killed with SIGKILL (no drain, its lease row stays) loses its accounts to
    the others within TTL + 10 s: each online on a survivor that validly holds it, with
    one live connection, and no duplicate use."""
    ttl = 6.0
    cluster = await make_cluster(accounts=30, ttl=ttl)
    names = ["w1", "w2", "w3"]
    await asyncio.gather(*(cluster.start_worker(n) for n in names))
    before = await cluster.wait_split(names, 60)
    victim = [a for a, w in before.holder.items() if w == "w2"]
    assert victim

    await cluster.workers["w2"].kill()
    took, after = await cluster.wait(
        lambda s: all(s.served(a, not_by="w2") for a in victim),
        ttl + 10,
        "failed over",
    )
    print(f"kill -9: {len(victim)} accounts back online on the survivors after {took:.1f} s")
    assert after.all_served(), describe(after)
    assert set(after.held()) == {"w1", "w3"}


@pytest.mark.timeout(100)
async def test_sigterm_hands_over_within_5s(make_cluster: ClusterFactory) -> None:
    """SIGTERM drains: the worker disconnects its clients, releases every lease and exits
    0; the others run its accounts within 5 s of the signal (default TTL 15 s: the
    survivors must not wait for their next renewal to notice)."""
    cluster = await make_cluster(accounts=30, ttl=15.0)
    names = ["w1", "w2", "w3"]
    await asyncio.gather(*(cluster.start_worker(n) for n in names))
    before = await cluster.wait_split(names, 60)
    victim = [a for a, w in before.holder.items() if w == "w3"]

    draining = asyncio.create_task(cluster.workers["w3"].terminate())
    took, _ = await cluster.wait(
        lambda s: all(s.served(a, not_by="w3") for a in victim), 20, "handed over"
    )
    status = await draining
    print(f"SIGTERM: {len(victim)} accounts handed over in {took:.1f} s; exit {status}")
    assert status == 0, cluster.workers["w3"].tail()
    assert took < 5.0, f"hand-over took {took:.1f} s"


@pytest.mark.timeout(120)
async def test_database_away_20s_fences_then_recovers_without_restart(
    make_cluster: ClusterFactory,
) -> None:
    """Every worker reaches PostgreSQL through a TCP proxy; the proxy drops every
    connection and refuses new ones for 20 s. The workers cannot renew, so they stop their
    clients (self-fencing: no live connection in the sandbox while away); no session runs
    twice; within 30 s after the line is back every account is online again, on the same
    worker processes."""
    ttl = 6.0
    proxy = TcpProxy(target_port=PG_PORT)
    await proxy.start()
    cluster = await make_cluster(accounts=20, ttl=ttl, via_proxy=proxy)
    names = ["w1", "w2"]
    await asyncio.gather(*(cluster.start_worker(n) for n in names))
    await cluster.wait_split(names, 60)
    pids = {n: cluster.workers[n].pid for n in names}

    await proxy.pause()
    cut = time.monotonic()
    # Fencing: the last renewal was at most TTL/3 before the cut; the loop notices at a
    # tick after TTL/2 (at most TTL/2 + TTL/3 after that renewal), then stops the clients.
    fenced, _ = await cluster.wait(
        lambda s: sum(s.connections.values()) == 0, ttl + 5, "fenced (no live connection)"
    )
    print(f"database away: every client stopped {fenced:.1f} s after the cut")
    while (left := 20.0 - (time.monotonic() - cut)) > 0:  # away for 20 s, still nobody runs
        snapshot = await cluster.snapshot()
        assert sum(snapshot.connections.values()) == 0, describe(snapshot)
        assert not snapshot.duplicate_use
        await asyncio.sleep(min(1.0, left))
    assert proxy.refused > 0  # the workers did try to reach the database meanwhile

    await proxy.resume()
    back, snapshot = await cluster.wait(lambda s: s.all_served(), 30, "back online")
    print(f"database back: all {len(snapshot.holder)} accounts online after {back:.1f} s")
    assert {n: cluster.workers[n].pid for n in names} == pids
    assert all(cluster.workers[n].alive() for n in names)


@pytest.mark.timeout(100)
async def test_frozen_worker_fences_before_using_its_old_connections(
    make_cluster: ClusterFactory,
) -> None:
    """SIGSTOP a worker for longer than TTL + grace: the other takes its accounts (the
    sandbox then sees two connections per account: the frozen one's and the new one).
    After SIGCONT the woken worker must not send on its old connections (``duplicate_use``
    stays 0 — it counts requests on an older connection after a newer one was used) and
    must close them (one connection per account again)."""
    ttl = 3.0
    cluster = await make_cluster(accounts=10, ttl=ttl)
    names = ["w1", "w2"]
    await asyncio.gather(*(cluster.start_worker(n) for n in names))
    before = await cluster.wait_split(names, 60)
    frozen = [a for a, w in before.holder.items() if w == "w2"]

    cluster.workers["w2"].signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        took, _ = await cluster.wait(
            lambda s: all(
                s.holder.get(a) == "w1"
                and s.online_on.get(a) == "w1"
                and s.connections.get(a, 0) == 2
                for a in frozen
            ),
            ttl + 15,
            "taken over while w2 is frozen",
        )
        await asyncio.sleep(max(0.0, ttl + 1.0 - (time.monotonic() - stopped_at)))
        frozen_for = time.monotonic() - stopped_at
    finally:
        cluster.workers["w2"].signal(signal.SIGCONT)
    print(f"w2 frozen {frozen_for:.1f} s; w1 ran its {len(frozen)} accounts after {took:.1f} s")
    assert frozen_for > ttl

    # After SIGCONT: the old connections close; nothing was sent on them meanwhile.
    closed, _ = await cluster.wait(
        lambda s: all(s.connections.get(a, 0) <= 1 for a in frozen), 10, "old connections closed"
    )
    print(f"after SIGCONT: w2's old connections closed within {closed:.1f} s")
    await asyncio.sleep(2.0)  # anything late from the woken worker would show now
    final = await cluster.snapshot()
    print(f"duplicate use after the freeze: {final.duplicate_use or 0}")
    assert not final.duplicate_use, final.duplicate_use
    assert cluster.workers["w2"].alive()
    await cluster.wait_split(names, 30)  # and it rejoins: the fleet splits again


@pytest.mark.timeout(180)
async def test_20_kill_restart_cycles_no_duplicate_use_none_unassigned(
    make_cluster: ClusterFactory,
) -> None:
    """20 times: kill -9 a random worker and restart it with the same id (a new epoch),
    1.5-3 s apart, TTL 3 s. The sandbox never sees duplicate use of any session (checked at
    every poll), and at the end every account desired running is validly held, online and
    connected once: none unassigned."""
    cluster = await make_cluster(accounts=30, ttl=3.0)
    names = ["w1", "w2", "w3"]
    await asyncio.gather(*(cluster.start_worker(n) for n in names))
    await cluster.wait_split(names, 60)
    chooser = random.Random(6)
    kills: list[str] = []
    for _ in range(20):
        name = chooser.choice(names)
        kills.append(name)
        await cluster.workers[name].kill()
        await cluster.start_worker(name)
        pause = time.monotonic() + chooser.uniform(1.5, 3.0)
        while time.monotonic() < pause:
            snapshot = await cluster.snapshot()
            assert not snapshot.duplicate_use, (kills, snapshot.duplicate_use)
            await asyncio.sleep(0.3)
    print(f"kills: {kills}")
    took, final = await cluster.wait(lambda s: s.all_served(), 40, "all served after the cycles")
    print(f"after 20 cycles: all served {took:.1f} s after the last restart: {final.held()}")
    assert not final.unassigned()
    assert not final.duplicate_use
    assert set(final.held()) <= set(names)
