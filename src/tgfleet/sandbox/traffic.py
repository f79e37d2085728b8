"""Seeded traffic of the simulated members: messages (Poisson per group) and joins.

The plan only says *what* happens *when*; the server applies each `TrafficEvent` to its
`WorldState` (``post`` / ``join``) and resolves ``reply_to_account`` to a message id there.

Every group has its own random streams, seeded from ``(seed, group id)``: one for messages,
one for joins. Adding or removing a group does not change another group's events, and the
sequence does not depend on how ``events_until`` calls are split.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from tgfleet.sandbox.world import World, WorldGroup

TrafficKind = Literal["message", "join"]

_WORDS = (
    "hello", "anyone", "seen", "the", "news", "today", "what", "do", "you", "think", "about",
    "this", "great", "idea", "thanks", "later", "meeting", "link", "please", "check", "ok",
    "sure", "maybe", "tomorrow", "weekend", "update", "question", "answer", "team", "plan",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TrafficEvent:
    """One thing a simulated member does, ``at`` seconds after the plan starts."""

    at: float
    group_id: int
    sender_id: int
    kind: TrafficKind
    text: str = ""
    #: Username of a fleet account @mentioned in ``text``.
    mentions_account: str | None = None
    #: Fleet account whose latest message in the group this replies to.
    reply_to_account: int | None = None
    #: The configured keyword ``text`` contains, if any.
    keyword: str | None = None


class _GroupStream:
    """The events of one group, in time order."""

    def __init__(self, world: World, group: WorldGroup, seed: int) -> None:
        settings = world.traffic
        self.group = group
        self.settings = settings
        self._msg_rng = random.Random(f"{seed}:{group.id}:message")  # noqa: S311  (simulation, not secrets)
        self._join_rng = random.Random(f"{seed}:{group.id}:join")  # noqa: S311  (same)
        accounts = world.accounts_by_id
        members = world.members_by_id
        self._accounts = [accounts[uid] for uid in group.members if uid in accounts]
        in_group = set(group.members)
        admins = set(group.admins)
        # Simulated people who may post; a read-only group lets only its admins speak.
        self._posters = [
            uid
            for uid in group.members
            if uid in members and (not group.read_only or uid in admins)
        ]
        self._outsiders = [m.id for m in world.members if m.id not in in_group]
        self._message_rate = settings.messages_per_minute / 60.0
        self._join_rate = settings.joins_per_hour / 3600.0
        self._next_message = self._after(0.0, self._msg_rng, self._message_rate)
        self._next_join = self._after(0.0, self._join_rng, self._join_rate)

    @staticmethod
    def _after(now: float, rng: random.Random, rate: float) -> float:
        return now + rng.expovariate(rate) if rate > 0 else float("inf")

    def next_at(self) -> float:
        return min(self._next_message, self._next_join)

    def pop(self) -> TrafficEvent | None:
        """The next event (None when that arrival has nobody to act it out)."""
        if self._next_join < self._next_message:
            at = self._next_join
            self._next_join = self._after(at, self._join_rng, self._join_rate)
            return self._join(at)
        at = self._next_message
        self._next_message = self._after(at, self._msg_rng, self._message_rate)
        return self._message(at)

    def _join(self, at: float) -> TrafficEvent | None:
        if not self._outsiders:
            return None
        index = self._join_rng.randrange(len(self._outsiders))
        # swap-remove keeps this O(1); the order only has to be reproducible.
        self._outsiders[index], self._outsiders[-1] = self._outsiders[-1], self._outsiders[index]
        joiner = self._outsiders.pop()
        if not self.group.read_only:
            self._posters.append(joiner)
        return TrafficEvent(at=at, group_id=self.group.id, sender_id=joiner, kind="join")

    def _message(self, at: float) -> TrafficEvent | None:
        rng = self._msg_rng
        settings = self.settings
        # Draw every choice on every arrival so one ratio does not shift the others' streams.
        sender = rng.choice(self._posters) if self._posters else None
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        mention_roll, reply_roll, keyword_roll = rng.random(), rng.random(), rng.random()
        mention_pick, reply_pick = rng.random(), rng.random()
        keyword_pick, keyword_pos = rng.random(), rng.random()
        if sender is None:
            return None
        mention: str | None = None
        reply_to: int | None = None
        keyword: str | None = None
        if self._accounts and mention_roll < settings.mention_ratio:
            mention = self._accounts[int(mention_pick * len(self._accounts))].username
            words.insert(0, f"@{mention}")
        if self._accounts and reply_roll < settings.reply_ratio:
            reply_to = self._accounts[int(reply_pick * len(self._accounts))].id
        if settings.keywords and keyword_roll < settings.keyword_ratio:
            keyword = settings.keywords[int(keyword_pick * len(settings.keywords))]
            words.insert(int(keyword_pos * (len(words) + 1)), keyword)
        return TrafficEvent(
            at=at,
            group_id=self.group.id,
            sender_id=sender,
            kind="message",
            text=" ".join(words),
            mentions_account=mention,
            reply_to_account=reply_to,
            keyword=keyword,
        )


class TrafficPlan:
    """The simulated members' events for a world, reproducible from ``seed``.

    ``seed`` defaults to the world's ``traffic.seed``. The plan is consumed as time passes:
    each `events_until` call yields the events not yet yielded, up to and including
    ``t_seconds``.
    """

    def __init__(self, world: World, seed: int | None = None) -> None:
        self.seed = world.traffic.seed if seed is None else seed
        self._streams = [_GroupStream(world, g, self.seed) for g in world.groups]
        self._heap = [(s.next_at(), i) for i, s in enumerate(self._streams)]
        heapq.heapify(self._heap)

    def events_until(self, t_seconds: float) -> Iterator[TrafficEvent]:
        """Yield, in time order, the events at or before ``t_seconds`` (since the start)."""
        heap = self._heap
        while heap and heap[0][0] <= t_seconds:
            _, index = heap[0]
            stream = self._streams[index]
            event = stream.pop()
            heapq.heapreplace(heap, (stream.next_at(), index))
            if event is not None:
                yield event
