"""The reply gate of a worker that shares its fleet with others (PostgreSQL).

Every guarantee of :mod:`tgfleet.playbook.gate` must hold across all workers, restarts and
hand-overs, so the decision is PostgreSQL's: one statement (``tgfleet_reply_admit``,
migration 0007) checks that the sender is no account of this fleet, that nobody claimed the
message, and the account's and the group's last hour, then claims and reserves. This class
only avoids asking when the answer is already known here, so the database sees one question
per reply, not one per account that saw the message:

* messages from the fleet's accounts are dropped on the in-memory set of their ids (the
  supervisor keeps it whole, fleet-wide; the database re-checks anyway);
* the accounts of this worker that see the same message ask one at a time: while one
  asks, the others wait for its answer, and go on only if it was refused for a reason of
  its own (its ``min_interval`` or ``account_hourly``);
* a claim seen here is answered from memory, and so is a limit's refusal, for the
  seconds the database said it holds but at most ``refusal_cache_seconds`` (5 s): a
  reservation released by another worker meanwhile is seen that late at worst;
* ``responders: one``: workers take turns per message. An admitted claim is announced
  (``NOTIFY tgfleet_replies``, in the same statement); every worker remembers which other
  workers announced answers in which group. For a message, the workers known to answer in
  its group and this one are ranked by a hash of the message and the worker id, the same
  order everywhere: the first asks at once, the n-th waits n times ``defer_step`` (0.1 s) for
  an announcement and asks only if none came; the workers ahead that stayed silent lose
  their turns in that group until they announce again (one that no longer runs an account
  there must not delay it). Usually one worker asks per message; a worker that hears
  nothing (its listener is down, a peer was slow) asks, and the database still decides:
  the order saves round trips, it guarantees nothing.

When the database cannot be asked (unreachable, or no answer within ``timeout``, 5 s), the
gate fails closed: ``limit_unavailable``, nothing is sent. Questions go through an asyncpg
pool of the gate's own (no pre-ping, no reset on release: the calls leave no session
state), one round trip each, without SQLAlchemy (half the client CPU per question).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

import asyncpg

from tgfleet import metrics
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.playbook.gate import (
    ADMITTED,
    CLAIM_TTL_SECONDS,
    MAX_CLAIMS,
    Admission,
    ReplyRequest,
    Ticket,
    refusal,
)
from tgfleet.worker.listener import asyncpg_dsn

log = get_logger(__name__)

DEFAULT_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
POOL_SIZE = 8
REFUSAL_CACHE_SECONDS = 5.0
#: Refusals for the asking account alone: another account of this worker may still answer.
_OWN_REASONS = frozenset({"limit:min_interval", "limit:account_hourly"})
_MAX_BLOCKED = 100_000
DEFER_STEP = 0.1
#: A peer that announced nothing in a group for this long no longer takes turns there.
PEER_TTL = 600.0
_MAX_PEER_GROUPS = 100_000


class FleetGate:
    def __init__(
        self,
        database_url: str,
        fleet_ids: set[int],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        refusal_cache_seconds: float = REFUSAL_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        worker_id: str = "",
        listening: Callable[[], bool] = lambda: False,
        defer_step: float = DEFER_STEP,
        pool_size: int = POOL_SIZE,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._fleet_ids = fleet_ids
        self._timeout = timeout
        self._refusal_cache = refusal_cache_seconds
        self._clock = clock
        self._pending: dict[str, asyncio.Future[Admission]] = {}
        # claim key -> (account key holding it, or None for another worker's; until)
        self._claims: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        # (reason, scope...) -> until: a limit the database said refuses until then
        self._blocked: dict[tuple[object, ...], float] = {}
        self._worker_id = worker_id
        self._listening = listening
        self._defer_step = defer_step
        # group -> other worker -> when it last announced an answer there
        self._peers: dict[int, dict[str, float]] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self.questions = 0
        self.failures = 0
        self.spared = 0  # questions not asked: another worker's announcement came first

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        timeout=CONNECT_TIMEOUT,
                        command_timeout=self._timeout,
                        reset=_leave_as_is,
                        server_settings={"application_name": "tgfleet-reply-gate"},
                    )
        return self._pool

    # ---- other workers' claims

    def heard(self, payload: str) -> None:
        """An announcement on the replies channel: ``<chat id> <claim key> <worker id>``."""
        chat, key, worker = payload.split(" ", 2)
        if worker == self._worker_id or not key:
            return
        now = self._clock()
        if len(self._peers) >= _MAX_PEER_GROUPS:
            self._peers.clear()  # bounded; turns are relearned from the next announcements
        self._peers.setdefault(int(chat), {})[worker] = now
        self._remember_claim(key, None, now)
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.set()

    def peers(self, chat_id: int) -> set[str]:
        """The other workers known to answer in a group."""
        return set(self._peers.get(chat_id, {}))

    def _ahead(self, request: ReplyRequest, now: float) -> list[str]:
        """The workers before this one in the message's turn order (empty: it is first)."""
        peers = self._peers.get(request.chat_id)
        if not peers:
            return []
        for worker in [w for w, seen in peers.items() if now - seen >= PEER_TTL]:
            del peers[worker]
        order = sorted([*peers, self._worker_id], key=lambda w: _digest(request.claim_key, w))
        return order[: order.index(self._worker_id)]

    async def _wait_turn(self, request: ReplyRequest) -> Admission | None:
        """Before asking: let the workers ahead in turn answer (see the module docstring);
        the answer they announced, if any."""
        if request.responders != "one" or not self._worker_id or not self._listening():
            return None
        ahead = self._ahead(request, self._clock())
        if not ahead:
            return None
        key = request.claim_key
        waiting = self._waiting.setdefault(key, asyncio.Event())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting.wait(), len(ahead) * self._defer_step)
        finally:
            self._waiting.pop(key, None)
        known = self._known(request, self._clock())
        if known is not None:
            self.spared += 1
            return known
        peers = self._peers.get(request.chat_id, {})
        for worker in ahead:  # silent: no turns here until it announces again
            peers.pop(worker, None)
        return None

    # ---- fleet members

    def remember_fleet_member(self, tg_user_id: int | None) -> None:
        if tg_user_id is not None:
            self._fleet_ids.add(tg_user_id)

    def is_fleet_member(self, user_id: int | None) -> bool:
        return user_id is not None and user_id in self._fleet_ids

    # ---- admitting

    async def admit(self, request: ReplyRequest) -> Admission:
        if self.is_fleet_member(request.sender_id):
            return Admission(False, "from_fleet", refusal("from_fleet", request.limits))
        key = request.claim_key
        while True:
            known = self._known(request, self._clock())
            if known is not None:
                return known
            pending = self._pending.get(key)
            if pending is None:
                break
            other = await asyncio.shield(pending)
            if other.reason in {"limit_unavailable", "from_fleet"}:
                # the database is away, or the sender is ours: the same for every account
                return Admission(False, other.reason, other.detail)
            # else: a claim or a limit now known here (the loop answers from it), or a
            # refusal of that account alone (this one asks in turn)
        future: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        result = Admission(False, "limit_unavailable", refusal("limit_unavailable", request.limits))
        try:
            result = await self._ask(request)
        finally:
            del self._pending[key]
            future.set_result(result)
        return result

    async def release(self, ticket: Ticket, *, keep_claim: bool = False) -> None:
        request = ticket.request
        if request.account_id is None:
            return
        if not keep_claim:
            claimed = self._claims.get(request.claim_key)
            if claimed is not None and claimed[0] == request.account_key:
                del self._claims[request.claim_key]
        for scope in _scopes(request):  # the budget is back: ask again next time
            self._blocked.pop(scope, None)
        pool = await self._connections()
        async with asyncio.timeout(self._timeout), pool.acquire() as connection:
            await lease_service.release_reply(
                connection,
                key=request.claim_key,
                account_id=request.account_id,
                chat_id=request.chat_id,
                reserved_at=ticket.reserved_at,
                keep_claim=keep_claim,
            )

    def _known(self, request: ReplyRequest, now: float) -> Admission | None:
        """The answer this worker already has: a claim, or a limit still refusing."""
        claimed = self._claims.get(request.claim_key)
        if claimed is not None:
            if claimed[1] > now:
                reason = "duplicate" if claimed[0] == request.account_key else "claimed_by_other"
                return Admission(False, reason, refusal(reason, request.limits))
            del self._claims[request.claim_key]
        for scope in _scopes(request):
            until = self._blocked.get(scope)
            if until is None:
                continue
            if until > now:
                reason = str(scope[0])
                return Admission(False, reason, refusal(reason, request.limits, until - now))
            del self._blocked[scope]
        return None

    async def _ask(self, request: ReplyRequest) -> Admission:
        limits = request.limits
        if request.account_id is None:  # every account a worker runs has one
            return Admission(False, "limit_unavailable", "the account has no id")
        announced = await self._wait_turn(request)
        if announced is not None:
            return announced
        announce = None
        if request.responders == "one" and self._worker_id:
            announce = f"{request.chat_id} {request.claim_key} {self._worker_id}"
        try:
            async with asyncio.timeout(self._timeout):
                pool = await self._connections()
                async with pool.acquire() as connection:
                    answer = await lease_service.admit_reply(
                        connection,
                        key=request.claim_key,
                        account_id=request.account_id,
                        chat_id=request.chat_id,
                        sender_id=request.sender_id,
                        min_interval=limits.min_interval_seconds,
                        account_hourly=limits.account_hourly,
                        group_hourly=limits.group_hourly,
                        claim_seconds=CLAIM_TTL_SECONDS,
                        announce=announce,
                    )
        except Exception as exc:
            self.failures += 1
            metrics.REPLY_GATE_FAILURES.inc()
            if self.failures in {1, 10, 100} or self.failures % 1000 == 0:
                log.warning(
                    "worker.reply_gate_unavailable", error=type(exc).__name__, count=self.failures
                )
            return Admission(False, "limit_unavailable", refusal("limit_unavailable", limits))
        self.questions += 1
        now = self._clock()
        verdict = answer.verdict
        metrics.REPLY_GATE_QUESTIONS.labels(verdict).inc()
        if verdict == ADMITTED and answer.reserved_at is not None:
            self._remember_claim(request.claim_key, request.account_key, now)
            return Admission(True, ADMITTED, ticket=Ticket(request, answer.reserved_at))
        if verdict in {"claimed_by_other", "duplicate"}:
            holder = request.account_key if verdict == "duplicate" else None
            self._remember_claim(request.claim_key, holder, now)
        elif verdict == "from_fleet":
            self.remember_fleet_member(request.sender_id)
        elif verdict.startswith("limit:") and answer.retry_in is not None:
            self._block(request, verdict, now + min(answer.retry_in, self._refusal_cache))
        wait = answer.retry_in if verdict == "limit:min_interval" else None
        return Admission(False, verdict, refusal(verdict, limits, wait))

    def _remember_claim(self, key: str, holder: str | None, now: float) -> None:
        self._claims.pop(key, None)
        self._claims[key] = (holder, now + CLAIM_TTL_SECONDS)
        while len(self._claims) > MAX_CLAIMS:
            self._claims.popitem(last=False)

    def _block(self, request: ReplyRequest, reason: str, until: float) -> None:
        if until <= self._clock():
            return
        if len(self._blocked) >= _MAX_BLOCKED:
            now = self._clock()
            for scope in [s for s, t in self._blocked.items() if t <= now]:
                del self._blocked[scope]
            if len(self._blocked) >= _MAX_BLOCKED:
                return  # memory is bounded; the database answers instead
        for scope in _scopes(request):
            if scope[0] == reason:
                self._blocked[scope] = until


def _scopes(request: ReplyRequest) -> tuple[tuple[object, ...], ...]:
    """The limit scopes a request falls in, each with its limit (rules differ)."""
    limits = request.limits
    return (
        ("limit:min_interval", request.account_key, request.chat_id, limits.min_interval_seconds),
        ("limit:account_hourly", request.account_key, limits.account_hourly),
        ("limit:group_hourly", request.chat_id, limits.group_hourly),
    )


def _digest(key: str, worker_id: str) -> bytes:
    return hashlib.blake2b(f"{key}\x00{worker_id}".encode(), digest_size=8).digest()


async def _leave_as_is(_connection: object) -> None:
    """The pool's reset on release, skipped: a round trip, and the calls change nothing."""
