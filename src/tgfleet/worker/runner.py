"""One account's life in a worker: connect, stay online, answer, recover, stop.

An :class:`AccountRunner` owns one Telethon client and walks the state machine of
DESIGN §4. Every network await has a timeout; every failure is classified
(:mod:`tgfleet.worker.classify`) and handled by class:

* transient: ``reconnecting``; tenacity retries with full-jitter exponential waits (base 1 s,
  cap 60 s), every reconnect attempt paying a token from the worker's retry budget, and
  stops explicitly: on a stop request, or after ``max_attempts`` (then ``error``,
  ``retries_exhausted``);
* wait: an account-wide flood wait is ``flood_wait`` for exactly the server's seconds (plus
  at most 250 ms of jitter); the reply that hit it is sent once afterwards; a slow-mode wait
  pauses only its group;
* group: replies in that group are switched off (recorded with the reason);
* quarantine / retire: the client is disconnected for good, ``quarantined`` with the
  reason; nothing reconnects until an operator restarts or re-imports the account;
* unknown: up to three attempts, then ``error``.

A handler that raises or hangs is contained (timeout, logged, counted); it never stalls the
client's other updates or any other account.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import tenacity
from telethon import TelegramClient, events
from telethon.tl import functions, types

from tgfleet import metrics
from tgfleet.account.runtime import (
    HELD_STATES,
    DesiredAccount,
    GroupSetting,
    State,
    StateChange,
    TimelineEvent,
    allowed,
)
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.playbook.engine import AccountInfo, CompiledPlaybook, Message, ReplyEngine
from tgfleet.vault.formats import CanonicalSession
from tgfleet.worker.classify import Classification, ErrorClass, classify
from tgfleet.worker.retry import TokenBucket, full_jitter_wait, reconnect_policy
from tgfleet.worker.status import StatusWriter
from tgfleet.worker.telegram import (
    ClientOptions,
    changed_record,
    reply_random_id,
    sent_message_id,
)

log = get_logger(__name__)

UNKNOWN_ATTEMPTS = 3
WAIT_JITTER = 0.25
DISCONNECT_TIMEOUT = 5.0
CANCELLED_DISCONNECT_TIMEOUT = 1.0
MAX_TYPING_SECONDS = 10.0
SENT_IDS_PER_CHAT = 200

ClientFactory = Callable[[CanonicalSession, ClientOptions], TelegramClient]
WriteBack = Callable[[uuid.UUID, CanonicalSession, int], Awaitable[int | None]]
LearnIdentity = Callable[[uuid.UUID, int, str | None], Awaitable[None]]


async def _remember_nothing(_account_id: uuid.UUID, _user_id: int, _username: str | None) -> None:
    return None


@dataclass(slots=True)
class WorkerContext:
    """What every runner of one worker shares."""

    worker_id: str
    writer: StatusWriter
    engine: ReplyEngine
    budget: TokenBucket
    options: ClientOptions
    client_factory: ClientFactory
    write_back: WriteBack
    connect_timeout: float = 15.0
    request_timeout: float = 20.0
    handler_timeout: float = 60.0
    retry_base: float = 1.0
    retry_cap: float = 60.0
    max_attempts: int = 1000
    start_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(50))
    groups: dict[uuid.UUID, dict[int, GroupSetting]] = field(default_factory=dict)
    playbooks: dict[tuple[uuid.UUID, int], CompiledPlaybook] = field(default_factory=dict)
    latest: dict[uuid.UUID, int] = field(default_factory=dict)
    #: False while this worker's lease is not known fresh (not renewed for TTL/2, e.g. after
    #: the process was frozen): then nothing is sent and nothing connects (self-fencing).
    lease_fresh: Callable[[], bool] = lambda: True
    #: Telegram user ids of every account of the fleet (on every worker, not only this
    #: one's): their messages never trigger replies, so no two accounts answer each other.
    fleet_ids: set[int] = field(default_factory=set)
    #: Stores an identity learned at connect (and tells every worker) before the account
    #: goes online; a failure is a transient connect error.
    learn_identity: LearnIdentity = _remember_nothing

    def playbook_for(self, setting: GroupSetting) -> CompiledPlaybook | None:
        if setting.playbook_id is None:
            return None
        version = setting.playbook_version or self.latest.get(setting.playbook_id)
        if version is None:
            return None
        return self.playbooks.get((setting.playbook_id, version))


class _Stopped(Exception):
    """The runner was asked to stop while connecting or waiting."""


class _Held(Exception):
    """The account entered a state only an operator lifts."""


class AccountRunner:
    def __init__(
        self,
        account: DesiredAccount,
        record: CanonicalSession,
        secret_version: int,
        context: WorkerContext,
    ) -> None:
        self.account_id = account.id
        self.label = account.label
        self.restart_seq = account.restart_seq
        self.secret_version = secret_version
        self.state = State.STOPPED
        self.last_error: Classification | None = None
        self._account = account
        self._record = record
        self._context = context
        self._client: TelegramClient | None = None
        self._stop = asyncio.Event()
        self._wait_until = 0.0  # monotonic end of the account-wide flood wait
        self._wait_done: asyncio.Event | None = None
        self._chat_wait_until: dict[int, float] = {}
        self._sent: dict[int, deque[int]] = {}
        self._info = AccountInfo(
            id=account.id,
            label=account.label,
            username=account.username,
            first_name=None,
            tg_user_id=account.tg_user_id,
        )
        self._me_id: int | None = account.tg_user_id
        self._username: str | None = account.username
        self._groups_recorded = False
        self._unknown_errors = 0
        self.reconnects = 0
        self.task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"account:{self.label}")
        return self.task

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def held(self) -> bool:
        return self.state in HELD_STATES

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded by design
        """Ask the runner to stop and wait for it (cancelling it after ``timeout``)."""
        self._stop.set()
        if self.task is None:
            return
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    # ------------------------------------------------------------------ state

    def _set(
        self,
        state: str,
        *,
        problem: Classification | None = None,
        reason: str | None = None,
        wait_until: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        previous = self.state
        if previous == state and state != State.FLOOD_WAIT:
            return
        if not allowed(previous, state) and previous != state:
            log.warning(
                "worker.unexpected_transition", account=self.label, previous=previous, state=state
            )
        self.state = state
        metrics.STATE_TRANSITIONS.labels(previous, state).inc()
        self._context.writer.state(
            StateChange(
                account_id=self.account_id,
                state=state,
                previous=previous,
                at=utcnow(),
                worker_id=None
                if state in {State.STOPPED, *HELD_STATES}
                else self._context.worker_id,
                reason=reason or (problem.reason if problem else None),
                error_code=problem.code if problem else None,
                error_message=problem.message if problem else None,
                wait_until=wait_until,
                restart_seq=self.restart_seq if state == State.STARTING else None,
                secret_version=self.secret_version if state == State.STARTING else None,
                details=details or {},
                source=self._context.worker_id,
            )
        )

    def _event(self, kind: str, code: str | None, message: str | None, **details: Any) -> None:
        self._context.writer.event(
            TimelineEvent(
                account_id=self.account_id,
                at=utcnow(),
                kind=kind,
                code=code,
                message=message,
                details=details,
            )
        )

    # ------------------------------------------------------------------ life

    async def run(self) -> None:
        self._set(State.STARTING)
        try:
            first = True
            while not self._stop.is_set():
                await self._connect_with_retries(first=first)
                first = False
                if self.state != State.ONLINE:
                    self._set(State.ONLINE)  # also after a flood wait met while connecting
                await self._record_groups_once()
                if self._client is not None:
                    await self._write_back(self._client)  # a DC switch while connecting
                error = await self._wait_disconnected()
                if error is None:
                    break  # asked to stop
                problem = _met(error)
                self.last_error = problem
                if problem.error_class in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
                    await self._hold(problem)
                    return
                self.reconnects += 1
                metrics.RECONNECTS.inc()
                self._context.writer.count(self.account_id, reconnects=1)
                self._set(State.RECONNECTING, problem=problem)
        except _Stopped:
            pass
        except _Held:
            return
        except asyncio.CancelledError:
            if self._client is not None:  # cancelled at shutdown: a short, last disconnect
                await self._disconnect_client(self._client, timeout=CANCELLED_DISCONNECT_TIMEOUT)
            self._finish_stopped()
            raise
        except Exception as exc:  # a bug must not take the worker down: record it
            log.exception("worker.runner_crashed", account=self.label)
            problem = _met(exc)
            self.last_error = problem
            await self._disconnect()
            self._set(State.ERROR, problem=problem)
            return
        await self._disconnect()
        self._finish_stopped()

    def _finish_stopped(self) -> None:
        if self.state in HELD_STATES or self.state == State.STOPPED:
            return
        if self.state != State.STOPPING:
            self._set(State.STOPPING)
        self._set(State.STOPPED)

    async def _hold(self, problem: Classification) -> None:
        """Quarantine (or retire): disconnect for good and never reconnect."""
        self._stop.set()
        await self._disconnect()
        reason = problem.reason
        metrics.QUARANTINES.labels(reason).inc()
        self._set(State.QUARANTINED, problem=problem, reason=reason)
        log.warning("worker.quarantined", account=self.label, code=problem.code, reason=reason)

    # ---- connecting

    async def _connect_with_retries(self, *, first: bool) -> None:
        """Connect, retrying transient and (three times) unknown failures with full-jitter
        backoff and the budget; waits out flood waits; raises _Held or _Stopped."""
        if not first:
            # A dropped connection: a jittered pause and a budget token before the first try.
            await self._sleep(random.uniform(0, self._context.retry_base))
            if self._stop.is_set():
                raise _Stopped
            await self._context.budget.take()
        retrying = reconnect_policy(
            budget=self._context.budget,
            stop_event=self._stop,
            max_attempts=self._context.max_attempts,
            base=self._context.retry_base,
            cap=self._context.retry_cap,
            retry_if=self._retryable,
            wait=self._retry_wait,
            before_sleep=self._before_retry_sleep,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await self._connect_once(gated=first)
        except _Stopped:
            raise
        except Exception as exc:
            if self._stop.is_set():
                raise _Stopped from exc
            problem = _met(exc)
            self.last_error = problem
            await self._disconnect()
            if problem.error_class in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
                await self._hold(problem)
            else:
                exhausted = problem.error_class in {ErrorClass.TRANSIENT, ErrorClass.WAIT}
                self._set(
                    State.ERROR,
                    problem=problem,
                    reason="retries_exhausted" if exhausted else None,
                    details={"max_attempts": self._context.max_attempts} if exhausted else None,
                )
                log.error("worker.account_error", account=self.label, code=problem.code)
            raise _Held from exc
        self._unknown_errors = 0

    def _retry_wait(self, retry_state: tenacity.RetryCallState) -> float:
        """A flood wait's own seconds (plus jitter), else full-jitter exponential backoff."""
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if error is not None:
            problem = classify(error)
            if problem.error_class is ErrorClass.WAIT and problem.seconds is not None:
                return problem.seconds + random.uniform(0, WAIT_JITTER)
        jitter = full_jitter_wait(self._context.retry_base, self._context.retry_cap)
        return float(jitter(retry_state))

    def _retryable(self, error: BaseException) -> bool:
        if self._stop.is_set() or isinstance(error, _Stopped):
            return False
        problem = classify(error)
        if problem.error_class is ErrorClass.UNKNOWN:
            self._unknown_errors += 1
            return self._unknown_errors < UNKNOWN_ATTEMPTS
        return problem.error_class in {ErrorClass.TRANSIENT, ErrorClass.WAIT}

    async def _before_retry_sleep(self, retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if error is None:
            return
        problem = _met(error)
        self.last_error = problem
        if problem.error_class is ErrorClass.WAIT and problem.seconds is not None:
            until = utcnow() + timedelta(seconds=problem.seconds)
            self._set(State.FLOOD_WAIT, problem=problem, wait_until=until)
        elif self.state != State.RECONNECTING:
            self._set(State.RECONNECTING, problem=problem)

    async def _connect_once(self, *, gated: bool) -> None:
        if self._stop.is_set() or not self._context.lease_fresh():
            raise _Stopped  # fenced: the supervisor starts it again once the lease is renewed
        if self._client is None:
            self._client = self._context.client_factory(self._record, self._context.options)
            self._client.add_event_handler(self._on_message, events.NewMessage(incoming=True))
            self._client.add_event_handler(self._on_chat_action, events.ChatAction())
        client = self._client
        if client.is_connected():
            await self._disconnect_client(client)
        try:
            if gated:
                async with self._context.start_gate:
                    await self._open(client)
            else:
                await self._open(client)
        except BaseException:
            await self._disconnect_client(client)
            raise

    async def _open(self, client: TelegramClient) -> None:
        started = time.perf_counter()
        try:
            await self._authorise(client)
        except BaseException:
            metrics.CONNECT_ATTEMPTS.labels("failed").inc()
            raise
        metrics.CONNECT_ATTEMPTS.labels("ok").inc()
        metrics.CONNECT_DURATION.observe(time.perf_counter() - started)

    async def _authorise(self, client: TelegramClient) -> None:
        timeout = self._context.connect_timeout
        await asyncio.wait_for(client.connect(), timeout)
        # A call that needs authorisation: a revoked or unknown key fails here, classified.
        users = await asyncio.wait_for(
            client(functions.users.GetUsersRequest([types.InputUserSelf()])), timeout
        )
        me = users[0] if users else None
        if isinstance(me, types.User):
            self._context.fleet_ids.add(me.id)
            if me.id != self._me_id:
                # Every worker must know this account before it can send anything.
                try:
                    await asyncio.wait_for(
                        self._context.learn_identity(self.account_id, me.id, me.username),
                        timeout,
                    )
                except (asyncio.CancelledError, TimeoutError):
                    raise
                except Exception as exc:
                    msg = f"could not store the account's identity ({type(exc).__name__})"
                    raise ConnectionError(msg) from exc
            elif me.username != self._username:
                self._context.writer.identity(self.account_id, me.id, me.username)
            self._me_id = me.id
            self._username = me.username
            self._info = AccountInfo(
                id=self.account_id,
                label=self.label,
                username=me.username,
                first_name=me.first_name,
                tg_user_id=me.id,
            )

    async def _wait_disconnected(self) -> BaseException | None:
        """Wait until the connection drops (its error) or a stop is asked (None)."""
        client = self._client
        if client is None:
            return ConnectionError("no client")
        stop = asyncio.create_task(self._stop.wait())
        dropped = asyncio.ensure_future(client.disconnected)
        try:
            done, _ = await asyncio.wait({stop, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            dropped.cancel()
        if self._stop.is_set():
            return None
        error: BaseException | None = None
        if dropped in done and not dropped.cancelled():
            error = dropped.exception()
        return error or ConnectionError("the connection closed")

    async def _disconnect(self) -> None:
        client = self._client
        if client is None:
            return
        await self._disconnect_client(client)
        await self._write_back(client)

    async def _disconnect_client(
        self,
        client: TelegramClient,
        *,
        timeout: float = DISCONNECT_TIMEOUT,  # noqa: ASYNC109 - bounded by design
    ) -> None:
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except Exception as exc:  # disconnecting must never raise out of a runner
            log.debug("worker.disconnect_failed", account=self.label, error=type(exc).__name__)

    async def _write_back(self, client: TelegramClient) -> None:
        changed = changed_record(client, self._record)
        if changed is None:
            return
        try:
            version = await self._context.write_back(self.account_id, changed, self.secret_version)
        except Exception as exc:
            log.error("worker.write_back_failed", account=self.label, error=type(exc).__name__)
            return
        if version is not None:
            self._record = changed
            self.secret_version = version

    async def _sleep(self, seconds: float) -> None:
        """Sleep, returning early when a stop is asked."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _record_groups_once(self) -> None:
        if self._groups_recorded or self._client is None:
            return
        self._groups_recorded = True
        try:
            dialogs = await asyncio.wait_for(
                self._client.get_dialogs(limit=500), self._context.request_timeout
            )
        except Exception as exc:
            log.info("worker.dialogs_failed", account=self.label, error=type(exc).__name__)
            self._groups_recorded = False
            return
        found = {int(d.id): d.name for d in dialogs if d.is_group}
        if found:
            self._context.writer.groups_found(self.account_id, found)

    # ------------------------------------------------------------------ updates

    async def _on_message(self, event: events.NewMessage.Event) -> None:
        await self._contained(self._handle_message(event))

    async def _on_chat_action(self, event: events.ChatAction.Event) -> None:
        if event.user_joined or event.user_added:
            await self._contained(self._handle_join(event))

    async def _contained(self, work: Awaitable[None]) -> None:
        """Run one update's work with a timeout; nothing escapes into Telethon."""
        try:
            await asyncio.wait_for(work, self._context.handler_timeout)
        except TimeoutError:
            log.warning("worker.handler_timeout", account=self.label)
            self._event("handler", "timeout", "an update took longer than the handler timeout")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.handler_failed", account=self.label)

    async def _handle_message(self, event: events.NewMessage.Event) -> None:
        if not event.is_group:
            return
        self._context.writer.count(self.account_id, messages_received=1)
        metrics.MESSAGES_RECEIVED.inc()
        if metrics.per_account_enabled():
            metrics.ACCOUNT_MESSAGES.labels(self.label).inc()
        if event.sender_id is not None and event.sender_id in self._context.fleet_ids:
            self._suppressed("from_fleet")  # another account of this fleet: never answer it
            return
        message = event.message
        sender = await _sender_of(event)
        text = message.message or ""
        reply_to = message.reply_to.reply_to_msg_id if message.reply_to else None
        chat_id = int(event.chat_id)
        sent = self._sent.get(chat_id)
        mention = bool(self._username) and f"@{self._username}".lower() in text.lower()
        item = Message(
            text=text,
            chat_id=chat_id,
            chat_title=_title(event),
            message_id=message.id,
            sender_id=sender[0],
            sender_username=sender[1],
            sender_first_name=sender[2],
            sender_last_name=sender[3],
            at=_aware(message.date),
            dedupe_key=_dedupe_key(chat_id, message.id, sender[0], message.date, text),
            reply_to_account=reply_to is not None and sent is not None and reply_to in sent,
            mentions_account=mention or bool(message.mentioned and reply_to is None),
        )
        await self._respond(item, reply_to_id=message.id, peer=message.peer_id)

    async def _handle_join(self, event: events.ChatAction.Event) -> None:
        if not event.is_group:
            return
        users = await event.get_users()
        chat_id = int(event.chat_id)
        for user in users or []:
            if user is None or (self._me_id is not None and user.id == self._me_id):
                continue
            item = Message(
                text="",
                chat_id=chat_id,
                chat_title=_title(event),
                message_id=event.action_message.id if event.action_message else 0,
                sender_id=user.id,
                sender_username=getattr(user, "username", None),
                sender_first_name=getattr(user, "first_name", None) or "",
                sender_last_name=getattr(user, "last_name", None),
                at=_aware(event.action_message.date if event.action_message else None),
                dedupe_key=_join_key(chat_id, user.id, event.action_message),
                new_member=True,
            )
            await self._respond(
                item,
                reply_to_id=None,
                peer=event.action_message.peer_id if event.action_message else None,
            )

    async def _respond(self, item: Message, *, reply_to_id: int | None, peer: Any) -> None:
        setting = self._context.groups.get(self.account_id, {}).get(item.chat_id)
        playbook = self._context.playbook_for(setting) if setting and setting.enabled else None
        if playbook is None:
            self._suppressed("group_disabled")  # replies are opt-in: no setting is off too
            return
        if self.state != State.ONLINE:
            self._suppressed("flood_wait" if self.state == State.FLOOD_WAIT else "not_online")
            return
        if self._chat_wait_until.get(item.chat_id, 0.0) > time.monotonic():
            self._suppressed("slow_mode")
            return
        outcome = await self._context.engine.respond(playbook, item, self._info)
        if outcome.fallback_reason:
            self._event(
                "llm_fallback",
                outcome.fallback_reason,
                outcome.detail,
                rule=outcome.rule,
                chat_id=item.chat_id,
            )
        if not outcome.fired or not outcome.text:
            self._suppressed(outcome.reason.partition(":")[0])  # limit:group_hourly -> limit
            return
        if peer is None or self._client is None:
            self._suppressed("not_online")
            return
        sent = await self._send(
            item.chat_id,
            peer,
            outcome.text,
            reply_to_id,
            outcome.typing_seconds,
            source=outcome.source or "template",
            random_id=reply_random_id(self.account_id, item.dedupe_key),
        )
        if sent is not True and outcome.ticket is not None:
            # Refused by Telegram: give the budget back. Unknown (a timeout): the reply may
            # be out, so the message stays claimed by this account.
            await self._context.engine.release(outcome.ticket, keep_claim=sent is None)

    def _suppressed(self, reason: str) -> None:
        self._context.writer.count(self.account_id, replies_suppressed=1)
        metrics.REPLIES_SUPPRESSED.labels(reason).inc()

    async def _send(
        self,
        chat_id: int,
        peer: Any,
        text: str,
        reply_to_id: int | None,
        typing: float,
        *,
        source: str,
        random_id: int,
    ) -> bool | None:
        """Send one reply: True when sent, False when refused (nothing went out), None
        when unknown (a request that timed out or failed on the way may have arrived;
        Telegram drops a repeat of its ``random_id``)."""
        client = self._client
        if client is None:
            return False
        timeout = self._context.request_timeout
        input_peer = await client.get_input_entity(peer)
        if typing > 0:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client(
                        functions.messages.SetTypingRequest(
                            input_peer, types.SendMessageTypingAction()
                        )
                    ),
                    timeout,
                )
            await self._sleep(min(typing, MAX_TYPING_SECONDS))
        request = functions.messages.SendMessageRequest(
            peer=input_peer,
            message=text,
            random_id=random_id,
            reply_to=types.InputReplyToMessage(reply_to_msg_id=reply_to_id)
            if reply_to_id
            else None,
        )
        unknown = False
        for _ in range(3):  # the first try, and a retry after each kind of wait
            if self._stop.is_set():
                return None if unknown else False
            if not self._context.lease_fresh():
                self._event("send_fenced", "lease_not_fresh", "not sent: the lease is not fresh")
                self._suppressed("fenced")
                return None if unknown else False
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(client(request), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = _met(exc)
                metrics.SEND_FAILURES.labels(problem.error_class.value).inc()
                unknown = unknown or problem.error_class not in _REFUSED
                if not await self._send_failed(chat_id, problem):
                    self._suppressed(_SEND_FAILED.get(problem.error_class, "send_failed"))
                    return None if unknown else False
                continue
            metrics.SEND_DURATION.observe(time.perf_counter() - started)
            metrics.REPLIES_SENT.labels(source).inc()
            if metrics.per_account_enabled():
                metrics.ACCOUNT_REPLIES.labels(self.label).inc()
            self._context.writer.count(self.account_id, replies_sent=1)
            message_id = sent_message_id(result, random_id)
            if message_id is not None:
                self._sent.setdefault(chat_id, deque(maxlen=SENT_IDS_PER_CHAT)).append(message_id)
            return True
        self._suppressed("send_failed")
        return None if unknown else False

    async def _send_failed(self, chat_id: int, problem: Classification) -> bool:
        """Handle a failed send; True when the same reply should be tried again."""
        self.last_error = problem
        kind = problem.error_class
        if kind is ErrorClass.WAIT and problem.scope == "chat":
            seconds = float(problem.seconds or 0) + random.uniform(0, WAIT_JITTER)
            metrics.FLOOD_WAIT_SECONDS.labels("chat").observe(float(problem.seconds or 0))
            self._chat_wait_until[chat_id] = time.monotonic() + seconds
            self._event(
                "slow_mode", problem.code, problem.message, chat_id=chat_id, seconds=problem.seconds
            )
            await self._sleep(seconds)
            return True
        if kind is ErrorClass.WAIT:
            await self._flood_wait(problem)
            return self.state == State.ONLINE
        if kind is ErrorClass.GROUP:
            metrics.GROUPS_DISABLED.labels(problem.reason).inc()
            self._context.writer.group_off(
                self.account_id,
                chat_id,
                reason=problem.reason,
                code=problem.code,
                message=problem.message,
            )
            setting = self._context.groups.get(self.account_id, {}).get(chat_id)
            if setting is not None:
                self._context.groups[self.account_id][chat_id] = GroupSetting(
                    chat_id=chat_id,
                    title=setting.title,
                    enabled=False,
                    playbook_id=setting.playbook_id,
                    playbook_version=setting.playbook_version,
                )
            log.warning(
                "worker.group_disabled", account=self.label, chat_id=chat_id, code=problem.code
            )
            return False
        if kind in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
            await self._hold(problem)
            return False
        self._event("send_failed", problem.code, problem.message, chat_id=chat_id)
        return False

    async def _flood_wait(self, problem: Classification) -> None:
        """Wait out an account-wide flood wait, to the second; concurrent senders share it."""
        seconds = float(problem.seconds or 0)
        metrics.FLOOD_WAIT_SECONDS.labels("account").observe(seconds)
        end = time.monotonic() + seconds + random.uniform(0, WAIT_JITTER)
        if self._wait_done is None or end > self._wait_until:
            self._wait_until = end
            if self._wait_done is None:
                self._wait_done = asyncio.Event()
                self._set(
                    State.FLOOD_WAIT,
                    problem=problem,
                    wait_until=utcnow() + timedelta(seconds=seconds),
                    details={"seconds": problem.seconds},
                )
                try:
                    while (
                        left := self._wait_until - time.monotonic()
                    ) > 0 and not self._stop.is_set():
                        await self._sleep(left)
                finally:
                    done, self._wait_done = self._wait_done, None
                    done.set()
                if self.state == State.FLOOD_WAIT and not self._stop.is_set():
                    self._set(State.ONLINE)
                return
        await self._wait_done.wait()


#: Error classes whose send Telegram refused outright: nothing went out.
_REFUSED = frozenset({ErrorClass.WAIT, ErrorClass.GROUP, ErrorClass.QUARANTINE, ErrorClass.RETIRE})

#: Why a reply that failed to send was given up, by the error's class.
_SEND_FAILED = {
    ErrorClass.WAIT: "flood_wait",
    ErrorClass.GROUP: "group_disabled",
    ErrorClass.QUARANTINE: "quarantined",
    ErrorClass.RETIRE: "quarantined",
}


def _met(error: BaseException) -> Classification:
    """Classify an error a client met, and count it (``tgfleet_errors_total``)."""
    problem = classify(error)
    metrics.ERRORS.labels(problem.error_class.value, problem.reason).inc()
    return problem


async def _sender_of(event: Any) -> tuple[int | None, str | None, str, str | None]:
    sender = await event.get_sender()
    if sender is None:
        return (event.sender_id, None, "", None)
    return (
        sender.id,
        getattr(sender, "username", None),
        getattr(sender, "first_name", None) or getattr(sender, "title", None) or "",
        getattr(sender, "last_name", None),
    )


def _title(event: Any) -> str:
    chat = getattr(event, "chat", None)
    return str(getattr(chat, "title", "") or "")


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return utcnow()
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dedupe_key(chat_id: int, message_id: int, sender_id: int | None, date: Any, text: str) -> str:
    """The same key for every fleet account that sees one message, in every worker process.
    Supergroup message ids are shared; basic-group ids differ per account, so those use
    sender, time and a digest of the text (stable across processes, unlike ``hash``)."""
    if str(chat_id).startswith("-100"):
        return f"{chat_id}:{message_id}"
    stamp = int(date.timestamp()) if isinstance(date, datetime) else 0
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return f"{chat_id}:{sender_id}:{stamp}:{digest}"


def _join_key(chat_id: int, user_id: int, action: Any) -> str:
    """One key per join as every fleet account sees it (a later re-join is a new one)."""
    date = getattr(action, "date", None)
    stamp = int(date.timestamp()) if isinstance(date, datetime) else 0
    return f"join:{chat_id}:{user_id}:{stamp}"
