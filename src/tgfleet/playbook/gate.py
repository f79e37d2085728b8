"""The reply gate: whether one account may answer one message, fleet-wide.

The engine decides *what* a rule would answer; a gate decides *whether* the answer may go
out: the sender is not an account of this fleet, no other account answers the same message
(``responders: one``), the same account never answers it twice, and the limits hold
(``min_interval_seconds`` per account and group, ``account_hourly``, ``group_hourly``, each
over the last hour). :meth:`ReplyGate.admit` checks and reserves in one step, so concurrent
messages see each other's reservations; :meth:`ReplyGate.release` gives a reservation back
when nothing was sent.

:class:`LocalGate` keeps all of it in memory and is exact for one process (SQLite, the
demo): checks and reservations happen without an ``await`` in between, so one event loop
serialises them. With several workers the decisions must be shared:
``tgfleet.worker.reply_gate.FleetGate`` asks PostgreSQL. Both give the same answers for the
same history (tests/playbook/test_gate.py runs one suite against both).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

CLAIM_TTL_SECONDS = 600.0
MAX_CLAIMS = 100_000
MAX_TRACKED_KEYS = 200_000
MAX_FLEET_IDS = 100_000
HOUR = 3600.0
SWEEP_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    min_interval_seconds: float
    account_hourly: int
    group_hourly: int
    probability: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "min_interval_seconds": self.min_interval_seconds,
            "account_hourly": self.account_hourly,
            "group_hourly": self.group_hourly,
            "probability": self.probability,
        }


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """One account asking to answer one message."""

    message_key: str  # the same for every fleet account that sees this one message
    account_key: str  # str(account id), or "label:<label>" for an account without an id
    account_id: uuid.UUID | None
    chat_id: int
    sender_id: int | None
    limits: Limits
    responders: Literal["one", "all"]

    @property
    def claim_key(self) -> str:
        """``one``: the message (whoever answers it); ``all``: the message for this account."""
        if self.responders == "one":
            return self.message_key
        return f"{self.message_key}#{self.account_key}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """A reservation: what :meth:`ReplyGate.release` gives back."""

    request: ReplyRequest
    reserved_at: float  # the gate's own clock (monotonic for LocalGate, unix for PostgreSQL)
    previous_sent_at: float | None = None  # LocalGate: the pair's last reply before this one


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    #: ``admitted``, or why not: ``from_fleet``, ``claimed_by_other``, ``duplicate``,
    #: ``limit:min_interval``, ``limit:account_hourly``, ``limit:group_hourly``,
    #: ``limit_unavailable`` (the shared limits could not be checked: fail closed).
    reason: str
    detail: str | None = None
    ticket: Ticket | None = None


ADMITTED = "admitted"


class ReplyGate(Protocol):
    def remember_fleet_member(self, tg_user_id: int | None) -> None:
        """An account of this fleet has this Telegram user id."""

    def is_fleet_member(self, user_id: int | None) -> bool:
        """Whether ``user_id`` is known as one of this fleet's accounts (fast, in memory)."""

    async def admit(self, request: ReplyRequest) -> Admission:
        """Check everything and, if the reply may go out, reserve its claim and budget."""

    async def release(self, ticket: Ticket, *, keep_claim: bool = False) -> None:
        """Give a reservation back: the reply was not sent. ``keep_claim``: the message stays
        claimed by this account (it may have been delivered; never answer it again)."""


def refusal(reason: str, limits: Limits, wait: float | None = None) -> str:
    """The human detail of a refusal (dry runs, events)."""
    if reason == "limit:min_interval":
        return f"next reply here in {max(0.0, wait or 0.0):.0f} s"
    if reason == "limit:account_hourly":
        return f"{limits.account_hourly} replies in the last hour"
    if reason == "limit:group_hourly":
        return f"{limits.group_hourly} replies here in the last hour"
    if reason == "duplicate":
        return "this account already answered it"
    if reason == "claimed_by_other":
        return "another fleet account answers it"
    if reason == "from_fleet":
        return "the sender is an account of this fleet"
    if reason == "limit_unavailable":
        return "the fleet-wide limits cannot be checked now (database unreachable): not sent"
    return reason


@dataclass(frozen=True, slots=True)
class SavedClaim:
    key: str
    account_id: uuid.UUID
    chat_id: int
    claimed_at: float  # unix time


@dataclass(frozen=True, slots=True)
class SavedReplies:
    """A gate's decisions in unix time, to survive a restart: limit windows by key (``a:``
    account, ``g:`` group, ``p:`` account and group; an empty list: nothing left) and the
    claims (``gone``: claims given back)."""

    windows: dict[str, list[float]]
    claims: list[SavedClaim]
    gone: list[str]

    def __bool__(self) -> bool:
        return bool(self.windows or self.claims or self.gone)


class LocalGate:
    """Every decision in this process's memory (bounded); exact for one process.

    :meth:`changes` and :meth:`restore` let the one process keep its decisions across a
    restart (the supervisor saves them to the database every second and loads them at
    start), so a restart brings no fresh budget and never answers a message twice.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._dirty_windows: set[str] = set()
        self._dirty_claims: set[str] = set()
        # (account, chat) -> time of the last reply, oldest first.
        self._last_sent: OrderedDict[tuple[str, int], float] = OrderedDict()
        # Reply times in the last hour per account and per chat.
        self._by_account: dict[str, deque[float]] = {}
        self._by_chat: dict[int, deque[float]] = {}
        # claim key -> (account, time claimed), oldest first.
        self._claims: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._claim_chats: dict[str, int] = {}
        self._fleet_ids: OrderedDict[int, None] = OrderedDict()
        self._next_sweep = clock() + SWEEP_EVERY_SECONDS

    def remember_fleet_member(self, tg_user_id: int | None) -> None:
        if tg_user_id is None:
            return
        self._fleet_ids.pop(tg_user_id, None)
        self._fleet_ids[tg_user_id] = None
        while len(self._fleet_ids) > MAX_FLEET_IDS:
            self._fleet_ids.popitem(last=False)

    def is_fleet_member(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._fleet_ids

    async def admit(self, request: ReplyRequest) -> Admission:
        now = self._clock()
        self._sweep(now)
        if self.is_fleet_member(request.sender_id):
            return Admission(False, "from_fleet", refusal("from_fleet", request.limits))
        refused = self._check(request, now)
        if refused is not None:
            return refused
        return Admission(True, ADMITTED, ticket=self._reserve(request, now))

    async def release(self, ticket: Ticket, *, keep_claim: bool = False) -> None:
        request = ticket.request
        pair = (request.account_key, request.chat_id)
        if self._last_sent.get(pair) == ticket.reserved_at:
            del self._last_sent[pair]
            if ticket.previous_sent_at is not None:
                self._last_sent[pair] = ticket.previous_sent_at
        for times in (self._by_account.get(request.account_key), self._by_chat.get(pair[1])):
            if times is not None and ticket.reserved_at in times:
                times.remove(ticket.reserved_at)
        if not keep_claim:
            claimed = self._claims.get(request.claim_key)
            if claimed is not None and claimed[0] == request.account_key:
                del self._claims[request.claim_key]
                self._dirty_claims.add(request.claim_key)
        self._touch(request)

    # ---- surviving a restart

    def changes(self) -> SavedReplies:
        """What changed since the last call, in unix time (only accounts with an id)."""
        offset = self._wall_clock() - self._clock()
        windows: dict[str, list[float]] = {}
        for key in self._dirty_windows:
            kind, _, rest = key.partition(":")
            if kind == "a":
                times: list[float] = list(self._by_account.get(rest, ()))
            elif kind == "g":
                times = list(self._by_chat.get(int(rest), ()))
            else:
                account, _, chat = rest.rpartition(":")
                last = self._last_sent.get((account, int(chat)))
                times = [] if last is None else [last]
            windows[key] = [t + offset for t in times]
        claims: list[SavedClaim] = []
        gone: list[str] = []
        for key in self._dirty_claims:
            claimed = self._claims.get(key)
            account_id = _uuid(claimed[0]) if claimed is not None else None
            if claimed is None or account_id is None:
                gone.append(key)
                continue
            chat_id = self._claim_chats.get(key, 0)
            claims.append(SavedClaim(key, account_id, chat_id, claimed[1] + offset))
        self._dirty_windows.clear()
        self._dirty_claims.clear()
        return SavedReplies(windows, claims, gone)

    def unsaved(self, saved: SavedReplies) -> None:
        """``saved`` could not be written: keep it for the next :meth:`changes`."""
        self._dirty_windows.update(saved.windows)
        self._dirty_claims.update(claim.key for claim in saved.claims)
        self._dirty_claims.update(saved.gone)

    def restore(self, saved: SavedReplies) -> None:
        """Take up the decisions a previous run of this process saved."""
        now = self._clock()
        offset = self._wall_clock() - now
        for key, unix_times in saved.windows.items():
            times = sorted(t - offset for t in unix_times if now - (t - offset) < HOUR)
            if not times:
                continue
            kind, _, rest = key.partition(":")
            if kind == "a":
                self._by_account[rest] = deque(times)
            elif kind == "g":
                self._by_chat[int(rest)] = deque(times)
            elif kind == "p":
                account, _, chat = rest.rpartition(":")
                self._last_sent[(account, int(chat))] = times[-1]
        for claim in sorted(saved.claims, key=lambda c: c.claimed_at):
            claimed_at = claim.claimed_at - offset
            if now - claimed_at < CLAIM_TTL_SECONDS:
                self._claims[claim.key] = (str(claim.account_id), claimed_at)
                self._claim_chats[claim.key] = claim.chat_id

    def _touch(self, request: ReplyRequest) -> None:
        if _uuid(request.account_key) is None:
            return  # dry runs and tests without ids: nothing to keep
        account, chat = request.account_key, request.chat_id
        self._dirty_windows.update((f"a:{account}", f"g:{chat}", f"p:{account}:{chat}"))
        self._dirty_claims.add(request.claim_key)
        self._claim_chats[request.claim_key] = chat
        while len(self._claim_chats) > MAX_CLAIMS:
            del self._claim_chats[next(iter(self._claim_chats))]

    def _check(self, request: ReplyRequest, now: float) -> Admission | None:
        limits = request.limits
        claimed = self._claims.get(request.claim_key)
        if claimed is not None and now - claimed[1] < CLAIM_TTL_SECONDS:
            reason = "duplicate" if claimed[0] == request.account_key else "claimed_by_other"
            return Admission(False, reason, refusal(reason, limits))
        last = self._last_sent.get((request.account_key, request.chat_id))
        if last is not None and now - last < limits.min_interval_seconds:
            wait = limits.min_interval_seconds - (now - last)
            return Admission(
                False, "limit:min_interval", refusal("limit:min_interval", limits, wait)
            )
        if _recent(self._by_account.get(request.account_key), now) >= limits.account_hourly:
            return Admission(False, "limit:account_hourly", refusal("limit:account_hourly", limits))
        if _recent(self._by_chat.get(request.chat_id), now) >= limits.group_hourly:
            return Admission(False, "limit:group_hourly", refusal("limit:group_hourly", limits))
        return None

    def _reserve(self, request: ReplyRequest, now: float) -> Ticket:
        pair = (request.account_key, request.chat_id)
        previous = self._last_sent.pop(pair, None)
        self._last_sent[pair] = now
        while len(self._last_sent) > MAX_TRACKED_KEYS:
            self._last_sent.popitem(last=False)
        self._by_account.setdefault(request.account_key, deque()).append(now)
        self._by_chat.setdefault(request.chat_id, deque()).append(now)
        self._claims.pop(request.claim_key, None)
        self._claims[request.claim_key] = (request.account_key, now)
        while len(self._claims) > MAX_CLAIMS:
            self._claims.popitem(last=False)
        self._touch(request)
        return Ticket(request, now, previous)

    def _sweep(self, now: float) -> None:
        """Drop expired state: claims every call (cheap, oldest first), the rest once a
        minute (min_interval is capped at an hour, so older entries can never matter)."""
        while self._claims:
            _, (_, claimed_at) = next(iter(self._claims.items()))
            if now - claimed_at < CLAIM_TTL_SECONDS:
                break
            self._claims.popitem(last=False)
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_EVERY_SECONDS
        while self._last_sent:
            _, sent_at = next(iter(self._last_sent.items()))
            if now - sent_at < HOUR:
                break
            self._last_sent.popitem(last=False)
        for account in [key for key, times in self._by_account.items() if not _recent(times, now)]:
            del self._by_account[account]
        for chat in [key for key, times in self._by_chat.items() if not _recent(times, now)]:
            del self._by_chat[chat]


def _uuid(account_key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(account_key)
    except ValueError:
        return None


def _recent(times: deque[float] | None, now: float) -> int:
    if not times:
        return 0
    while times and now - times[0] >= HOUR:
        times.popleft()
    return len(times)
