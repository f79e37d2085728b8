"""The simulated members' traffic: reproducible, at the configured rates and ratios."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from tgfleet.sandbox.rule_errors import ReplyInvalid
from tgfleet.sandbox.state import WorldState
from tgfleet.sandbox.traffic import TrafficEvent, TrafficPlan
from tgfleet.sandbox.world import TrafficSettings, World, WorldAccount, WorldGroup, WorldMember

ACCOUNTS = tuple(
    WorldAccount(
        id=1_000_000 + n,
        access_hash=n,
        first_name=f"Fleet {n}",
        username=f"fleet_{n:04d}",
        auth_key=bytes([n]) * 256,
    )
    for n in range(1, 4)
)
MEMBERS = tuple(
    WorldMember(id=2_000_000 + n, access_hash=n, first_name=f"Member {n}") for n in range(1, 421)
)
ACCOUNT_IDS = tuple(a.id for a in ACCOUNTS)
MINUTE = 60.0


def make_world(
    traffic: TrafficSettings | None = None, *, groups: int = 2, read_only: bool = False
) -> World:
    """``groups`` supergroups, each with every account and 5 members of its own; the other
    members are outside every group, free to join."""
    built = tuple(
        WorldGroup(
            id=1_500_000_000 + g,
            kind="supergroup",
            title=f"Group {g}",
            access_hash=g + 1,
            members=ACCOUNT_IDS + tuple(m.id for m in MEMBERS[g * 5 : g * 5 + 5]),
            admins=(MEMBERS[g * 5].id,),
            read_only=read_only,
        )
        for g in range(groups)
    )
    return World(
        accounts=ACCOUNTS,
        members=MEMBERS,
        groups=built,
        traffic=traffic or TrafficSettings(seed=3, keywords=("price", "urgent")),
    )


def _events(plan: TrafficPlan, minutes: float) -> list[TrafficEvent]:
    return list(plan.events_until(minutes * MINUTE))


class TestReproducible:
    def test_same_seed_same_events(self) -> None:
        """The same world and seed give the identical sequence."""
        world = make_world()
        assert _events(TrafficPlan(world), 120) == _events(TrafficPlan(world), 120)

    def test_chunking_does_not_matter(self) -> None:
        """Consuming the plan in steps gives the same events as in one go, each once."""
        world = make_world()
        whole = _events(TrafficPlan(world), 120)
        plan = TrafficPlan(world)
        stepped = [e for t in range(1, 121) for e in plan.events_until(t * MINUTE)]
        assert stepped == whole
        assert list(plan.events_until(120 * MINUTE)) == []

    def test_other_seed_other_events(self) -> None:
        """A different seed changes the events; the world's seed is the default."""
        world = make_world()
        assert _events(TrafficPlan(world, seed=4), 60) != _events(TrafficPlan(world), 60)
        assert _events(TrafficPlan(world, seed=3), 60) == _events(TrafficPlan(world), 60)

    def test_adding_a_group_keeps_the_others(self) -> None:
        """A group's stream does not depend on which other groups exist."""
        one = _events(TrafficPlan(make_world(groups=1)), 300)
        three = _events(TrafficPlan(make_world(groups=3)), 300)
        assert [e for e in three if e.group_id == 1_500_000_000] == one
        assert {e.group_id for e in three} == {1_500_000_000, 1_500_000_001, 1_500_000_002}

    def test_time_order(self) -> None:
        """Events come out in time order across groups."""
        times = [e.at for e in _events(TrafficPlan(make_world(groups=3)), 300)]
        assert times == sorted(times)
        assert all(0 < t <= 300 * MINUTE for t in times)


class TestRates:
    def test_message_rate(self) -> None:
        """Over 10,000 simulated minutes each group's message rate is within 5% of the mean."""
        world = make_world(TrafficSettings(seed=9, messages_per_minute=3, joins_per_hour=0))
        counts = Counter(
            e.group_id for e in _events(TrafficPlan(world), 10_000) if e.kind == "message"
        )
        for group in world.groups:
            assert counts[group.id] / 10_000 == pytest.approx(3.0, rel=0.05)

    def test_ratios(self) -> None:
        """Mentions, replies and keywords appear at their configured shares (±0.01)."""
        settings = TrafficSettings(
            seed=5,
            messages_per_minute=5,
            mention_ratio=0.2,
            reply_ratio=0.1,
            keyword_ratio=0.3,
            keywords=("price", "urgent"),
            joins_per_hour=0,
        )
        messages = _events(TrafficPlan(make_world(settings)), 5_000)
        n = len(messages)
        assert n > 40_000
        mentions = [e for e in messages if e.mentions_account]
        replies = [e for e in messages if e.reply_to_account]
        keywords = [e for e in messages if e.keyword]
        assert len(mentions) / n == pytest.approx(0.2, abs=0.01)
        assert len(replies) / n == pytest.approx(0.1, abs=0.01)
        assert len(keywords) / n == pytest.approx(0.3, abs=0.01)
        usernames = {a.username for a in ACCOUNTS}
        assert all(e.mentions_account in usernames for e in mentions)
        assert all(f"@{e.mentions_account}" in e.text.split() for e in mentions)
        assert all(e.reply_to_account in ACCOUNT_IDS for e in replies)
        assert all(e.keyword in e.text.split() for e in keywords)
        assert {e.keyword for e in keywords} == {"price", "urgent"}
        plain = [e for e in messages if not (e.mentions_account or e.keyword)]
        assert not any(
            w in ("price", "urgent") or w.startswith("@") for e in plain for w in e.text.split()
        )

    def test_zero_rates(self) -> None:
        """Zero rates mean no events at all."""
        world = make_world(TrafficSettings(messages_per_minute=0, joins_per_hour=0))
        assert _events(TrafficPlan(world), 10_000) == []


class TestJoins:
    def test_join_rate_and_joiners(self) -> None:
        """Joins arrive at joins_per_hour, by members from outside the group, each once."""
        world = make_world(TrafficSettings(seed=1, messages_per_minute=0, joins_per_hour=2))
        joins = _events(TrafficPlan(world), 3_000)  # 50 hours: about 100 joins per group
        assert {e.kind for e in joins} == {"join"}
        for group in world.groups:
            joined = [e.sender_id for e in joins if e.group_id == group.id]
            assert 70 <= len(joined) <= 130
            assert len(set(joined)) == len(joined)
            assert set(joined).isdisjoint(group.members)

    def test_joiners_then_post(self) -> None:
        """A member who joined can be the sender of later messages."""
        world = make_world(TrafficSettings(seed=2, messages_per_minute=3, joins_per_hour=30))
        events = _events(TrafficPlan(world), 600)
        joined_at = {(e.group_id, e.sender_id): e.at for e in events if e.kind == "join"}
        original = {(g.id, uid) for g in world.groups for uid in g.members}
        posters = {(e.group_id, e.sender_id): e.at for e in events if e.kind == "message"}
        newcomers = {key: at for key, at in posters.items() if key not in original}
        assert newcomers
        assert all(key in joined_at for key in newcomers)

    def test_joins_stop_when_nobody_is_left(self) -> None:
        """Once every outsider has joined, the plan makes no more join events."""
        world = make_world(TrafficSettings(seed=2, messages_per_minute=0, joins_per_hour=60))
        world = replace(world, members=world.members[:10])
        events = _events(TrafficPlan(world), 6_000)
        first, second = world.groups
        joined = {g.id: {e.sender_id for e in events if e.group_id == g.id} for g in world.groups}
        assert len(events) == 10
        assert joined[first.id] == set(second.members) - set(ACCOUNT_IDS)
        assert joined[second.id] == set(first.members) - set(ACCOUNT_IDS)


def test_read_only_group_only_admins_post() -> None:
    """In a read-only group the only simulated sender is an admin."""
    world = make_world(read_only=True)
    events = [e for e in _events(TrafficPlan(world), 600) if e.kind == "message"]
    assert events
    admins = {uid for g in world.groups for uid in g.admins}
    assert {e.sender_id for e in events} <= admins


def test_plan_applies_to_world_state() -> None:
    """A day of traffic applied to WorldState: every event is accepted, replies resolve once
    the target account has posted, and each account's channel view stays gap-free."""
    world = make_world(TrafficSettings(seed=8, messages_per_minute=3, reply_ratio=0.3))
    state = WorldState(world)
    for group in world.groups:
        state.post(group.id, ACCOUNT_IDS[0], "first")
    replies = 0
    for event in TrafficPlan(world).events_until(24 * 60 * MINUTE):
        if event.kind == "join":
            state.join(event.group_id, event.sender_id)
            continue
        try:
            deliveries = state.post(
                event.group_id,
                event.sender_id,
                event.text,
                reply_to_account=event.reply_to_account,
            )
        except ReplyInvalid:
            assert event.reply_to_account != ACCOUNT_IDS[0]
            deliveries = state.post(event.group_id, event.sender_id, event.text)
        else:
            replies += event.reply_to_account is not None
        assert {d.account_id for d in deliveries} == set(ACCOUNT_IDS)
    assert replies > 100
    for group in world.groups:
        pts = [d.pts for d in state.channel_difference(ACCOUNT_IDS[1], group.id, 0)]
        assert pts == list(range(1, state.channel_pts(group.id) + 1))
