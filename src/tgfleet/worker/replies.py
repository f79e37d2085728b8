"""One account's replies: incoming updates made into messages, the playbook's answer, sending.

A :class:`Replies` listens on the account's client for new group messages and joins, turns
each into a :class:`~tgfleet.playbook.engine.Message` (with the dedupe key every fleet
account computes alike), asks the reply engine (the playbook, the fleet's reply gate) and
sends what it answers, once. A handler that raises or hangs is contained (timeout, logged,
counted); it never stalls the client's other updates or any other account. A failed send is
handled by its class: an account-wide flood wait is waited out to the second (concurrent
senders share it) and the reply sent once afterwards, a slow-mode wait pauses only its
group, a group error switches replies off in that group, a quarantine holds the account.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from telethon import TelegramClient, events
from telethon.tl import functions, types

from tgfleet import metrics
from tgfleet.account import runtime
from tgfleet.account.runtime import GroupSetting
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.models import AccountState
from tgfleet.playbook.engine import Message
from tgfleet.worker.classify import Classification, ErrorClass
from tgfleet.worker.connection import WAIT_JITTER, Connection
from tgfleet.worker.context import WorkerContext
from tgfleet.worker.incoming import group_message, new_member, sender_of
from tgfleet.worker.runner_state import RunnerState, classify_met
from tgfleet.worker.telegram import reply_random_id, sent_message_id

#: The runner's log lines keep the logger they always had.
log = get_logger("tgfleet.worker.runner")

MAX_TYPING_SECONDS = 10.0
SENT_IDS_PER_CHAT = 200


class Replies:
    """What the account answers in its groups, and how each reply is sent."""

    def __init__(self, runner: RunnerState, connection: Connection, context: WorkerContext) -> None:
        self._runner = runner
        self._connection = connection
        self._context = context
        self._wait_until = 0.0  # monotonic end of the account-wide flood wait
        self._wait_done: asyncio.Event | None = None
        self._chat_wait_until: dict[int, float] = {}
        #: The ids of the account's own recent messages, by chat (a reply to one is to it).
        self._sent: dict[int, deque[int]] = {}

    def listen(self, client: TelegramClient) -> None:
        """Handle the client's incoming group messages and joins."""
        client.add_event_handler(self.on_message, events.NewMessage(incoming=True))
        client.add_event_handler(self.on_chat_action, events.ChatAction())

    async def on_message(self, event: events.NewMessage.Event) -> None:
        await self._contained(self._handle_message(event))

    async def on_chat_action(self, event: events.ChatAction.Event) -> None:
        if event.user_joined or event.user_added:
            await self._contained(self._handle_join(event))

    async def _contained(self, work: Awaitable[None]) -> None:
        """Run one update's work with a timeout; nothing escapes into Telethon."""
        try:
            await asyncio.wait_for(work, self._context.handler_timeout)
        except TimeoutError:
            log.warning("worker.handler_timeout", account=self._runner.label)
            self._runner.event(
                "handler", "timeout", "an update took longer than the handler timeout"
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.handler_failed", account=self._runner.label)

    async def _handle_message(self, event: events.NewMessage.Event) -> None:
        if not event.is_group:
            return
        self._context.writer.count(self._runner.account_id, messages_received=1)
        metrics.MESSAGES_RECEIVED.inc()
        if metrics.per_account_enabled():
            metrics.ACCOUNT_MESSAGES.labels(self._runner.label).inc()
        if event.sender_id is not None and event.sender_id in self._context.fleet_ids:
            self._suppressed("from_fleet")  # another account of this fleet: never answer it
            return
        sender = await sender_of(event)
        item = group_message(
            event,
            sender,
            own_message_ids=self._sent.get(int(event.chat_id)),
            username=self._connection.username,
        )
        await self._respond(item, reply_to_id=event.message.id, peer=event.message.peer_id)

    async def _handle_join(self, event: events.ChatAction.Event) -> None:
        if not event.is_group:
            return
        users = await event.get_users()
        for user in users or []:
            me_id = self._connection.me_id
            if user is None or (me_id is not None and user.id == me_id):
                continue
            await self._respond(
                new_member(event, user),
                reply_to_id=None,
                peer=event.action_message.peer_id if event.action_message else None,
            )

    async def _respond(self, item: Message, *, reply_to_id: int | None, peer: Any) -> None:
        setting = self._context.groups.get(self._runner.account_id, {}).get(item.chat_id)
        playbook = self._context.playbook_for(setting) if setting and setting.enabled else None
        if playbook is None:
            self._suppressed("group_disabled")  # replies are opt-in: no setting is off too
            return
        state = self._runner.state
        if state != AccountState.ONLINE:
            self._suppressed("flood_wait" if state == AccountState.FLOOD_WAIT else "not_online")
            return
        if self._chat_wait_until.get(item.chat_id, 0.0) > time.monotonic():
            self._suppressed("slow_mode")
            return
        outcome = await self._context.engine.respond(playbook, item, self._connection.info)
        if outcome.fallback_reason:
            self._runner.event(
                "llm_fallback",
                outcome.fallback_reason,
                outcome.detail,
                rule=outcome.rule,
                chat_id=item.chat_id,
            )
        if not outcome.fired or not outcome.text:
            self._suppressed(outcome.reason.partition(":")[0])  # limit:group_hourly -> limit
            return
        if peer is None or self._connection.client is None:
            self._suppressed("not_online")
            return
        sent = await self._send(
            item.chat_id,
            peer,
            outcome.text,
            reply_to_id,
            outcome.typing_seconds,
            source=outcome.source or "template",
            random_id=reply_random_id(self._runner.account_id, item.dedupe_key),
        )
        if sent is True:
            self._context.writer.event(
                runtime.reply_event(
                    self._runner.account_id,
                    outcome.text,
                    source=outcome.source or "template",
                    chat_id=item.chat_id,
                    chat_title=item.chat_title or (setting.title if setting else None),
                    reply_to=reply_to_id,
                    playbook_id=setting.playbook_id if setting else None,
                    playbook_version=playbook.version,
                    rule=outcome.rule,
                    keep_text=self._context.keep_reply_text,
                )
            )
        elif outcome.ticket is not None:
            # Refused by Telegram: give the budget back. Unknown (a timeout): the reply may
            # be out, so the message stays claimed by this account.
            await self._context.engine.release(outcome.ticket, keep_claim=sent is None)

    def _suppressed(self, reason: str) -> None:
        self._context.writer.count(self._runner.account_id, replies_suppressed=1)
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
        client = self._connection.client
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
            await self._runner.sleep(min(typing, MAX_TYPING_SECONDS))
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
            if self._runner.stop.is_set():
                return None if unknown else False
            if not self._context.lease_fresh():
                self._runner.event(
                    "send_fenced", "lease_not_fresh", "not sent: the lease is not fresh"
                )
                self._suppressed("fenced")
                return None if unknown else False
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(client(request), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = classify_met(exc)
                metrics.SEND_FAILURES.labels(problem.error_class.value).inc()
                unknown = unknown or problem.error_class not in _REFUSED
                if not await self._send_failed(chat_id, problem):
                    self._suppressed(_SEND_FAILED.get(problem.error_class, "send_failed"))
                    return None if unknown else False
                continue
            metrics.SEND_DURATION.observe(time.perf_counter() - started)
            metrics.REPLIES_SENT.labels(source).inc()
            if metrics.per_account_enabled():
                metrics.ACCOUNT_REPLIES.labels(self._runner.label).inc()
            self._context.writer.count(self._runner.account_id, replies_sent=1)
            message_id = sent_message_id(result, random_id)
            if message_id is not None:
                self._sent.setdefault(chat_id, deque(maxlen=SENT_IDS_PER_CHAT)).append(message_id)
            return True
        self._suppressed("send_failed")
        return None if unknown else False

    async def _send_failed(self, chat_id: int, problem: Classification) -> bool:
        """Handle a failed send; True when the same reply should be tried again."""
        self._runner.last_error = problem
        kind = problem.error_class
        if kind is ErrorClass.WAIT and problem.scope == "chat":
            seconds = float(problem.seconds or 0) + random.uniform(0, WAIT_JITTER)
            metrics.FLOOD_WAIT_SECONDS.labels("chat").observe(float(problem.seconds or 0))
            self._chat_wait_until[chat_id] = time.monotonic() + seconds
            self._runner.event(
                "slow_mode", problem.code, problem.message, chat_id=chat_id, seconds=problem.seconds
            )
            await self._runner.sleep(seconds)
            return True
        if kind is ErrorClass.WAIT:
            await self._flood_wait(problem)
            return self._runner.state == AccountState.ONLINE
        if kind is ErrorClass.GROUP:
            account_id = self._runner.account_id
            metrics.GROUPS_DISABLED.labels(problem.reason).inc()
            self._context.writer.group_off(
                account_id,
                chat_id,
                reason=problem.reason,
                code=problem.code,
                message=problem.message,
            )
            setting = self._context.groups.get(account_id, {}).get(chat_id)
            if setting is not None:
                self._context.groups[account_id][chat_id] = GroupSetting(
                    chat_id=chat_id,
                    title=setting.title,
                    enabled=False,
                    playbook_id=setting.playbook_id,
                    playbook_version=setting.playbook_version,
                )
            log.warning(
                "worker.group_disabled",
                account=self._runner.label,
                chat_id=chat_id,
                code=problem.code,
            )
            return False
        if kind in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
            await self._connection.hold(problem)
            return False
        self._runner.event("send_failed", problem.code, problem.message, chat_id=chat_id)
        return False

    async def _flood_wait(self, problem: Classification) -> None:
        """Wait out an account-wide flood wait, to the second; concurrent senders share it."""
        runner = self._runner
        seconds = float(problem.seconds or 0)
        metrics.FLOOD_WAIT_SECONDS.labels("account").observe(seconds)
        end = time.monotonic() + seconds + random.uniform(0, WAIT_JITTER)
        if self._wait_done is None or end > self._wait_until:
            self._wait_until = end
            if self._wait_done is None:
                self._wait_done = asyncio.Event()
                runner.set(
                    AccountState.FLOOD_WAIT,
                    problem=problem,
                    wait_until=utcnow() + timedelta(seconds=seconds),
                    details={"seconds": problem.seconds},
                )
                try:
                    while (
                        left := self._wait_until - time.monotonic()
                    ) > 0 and not runner.stop.is_set():
                        await runner.sleep(left)
                finally:
                    done, self._wait_done = self._wait_done, None
                    done.set()
                if runner.state == AccountState.FLOOD_WAIT and not runner.stop.is_set():
                    runner.set(AccountState.ONLINE)
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
