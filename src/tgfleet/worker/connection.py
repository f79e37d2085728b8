"""One account's connection: connect, authorise, reconnect with backoff, hold for good.

A :class:`Connection` owns the account's Telethon client and its session record. Every
network await has a timeout; every failure is classified (:mod:`tgfleet.worker.classify`)
and handled by class: transient and flood-wait failures retry with tenacity (full-jitter
exponential waits, a flood wait's own seconds, a token from the worker's retry budget per
attempt), an unknown one up to three times, a quarantine or retire holds the account
(:meth:`Connection.hold`). A changed session (a DC or key switch) is written back to the
vault after each connect and when the runner ends.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import timedelta

import tenacity
from telethon import TelegramClient
from telethon.tl import functions, types

from tgfleet import metrics
from tgfleet.account.runtime import DesiredAccount
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.models import AccountState
from tgfleet.playbook.engine import AccountInfo
from tgfleet.vault.formats import CanonicalSession
from tgfleet.worker.classify import Classification, ErrorClass, classify
from tgfleet.worker.context import WorkerContext
from tgfleet.worker.retry import full_jitter_wait, reconnect_policy
from tgfleet.worker.runner_state import RunnerState, classify_met
from tgfleet.worker.telegram import changed_record

#: The runner's log lines keep the logger they always had.
log = get_logger("tgfleet.worker.runner")

UNKNOWN_ATTEMPTS = 3
WAIT_JITTER = 0.25
DISCONNECT_TIMEOUT = 5.0


class StopRequested(Exception):
    """The runner was asked to stop while connecting or waiting."""


class AccountHeld(Exception):
    """The account entered a state only an operator lifts."""


class Connection:
    """The account's client: connecting, the identity learned there, disconnecting."""

    def __init__(
        self,
        runner: RunnerState,
        account: DesiredAccount,
        record: CanonicalSession,
        context: WorkerContext,
        *,
        listen: Callable[[TelegramClient], None],
    ) -> None:
        self._runner = runner
        self._context = context
        self._listen = listen
        self.client: TelegramClient | None = None
        #: The session as last stored; a client's changes to it are written back.
        self.record = record
        self.me_id: int | None = account.tg_user_id
        self.username: str | None = account.username
        self.info = AccountInfo(
            id=account.id,
            label=account.label,
            username=account.username,
            first_name=None,
            tg_user_id=account.tg_user_id,
        )
        self._groups_recorded = False
        self._unknown_errors = 0

    async def connect_with_retries(self, *, first: bool) -> None:
        """Connect, retrying transient and (three times) unknown failures with full-jitter
        backoff and the budget; waits out flood waits; raises AccountHeld or StopRequested."""
        if not first:
            # A dropped connection: a jittered pause and a budget token before the first try.
            await self._runner.sleep(random.uniform(0, self._context.retry_base))
            if self._runner.stop.is_set():
                raise StopRequested
            await self._context.budget.take()
        retrying = reconnect_policy(
            budget=self._context.budget,
            stop_event=self._runner.stop,
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
        except StopRequested:
            raise
        except Exception as exc:
            if self._runner.stop.is_set():
                raise StopRequested from exc
            problem = classify_met(exc)
            self._runner.last_error = problem
            await self.disconnect()
            if problem.error_class in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
                await self.hold(problem)
            else:
                exhausted = problem.error_class in {ErrorClass.TRANSIENT, ErrorClass.WAIT}
                self._runner.set(
                    AccountState.ERROR,
                    problem=problem,
                    reason="retries_exhausted" if exhausted else None,
                    details={"max_attempts": self._context.max_attempts} if exhausted else None,
                )
                log.error("worker.account_error", account=self._runner.label, code=problem.code)
            raise AccountHeld from exc
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
        if self._runner.stop.is_set() or isinstance(error, StopRequested):
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
        problem = classify_met(error)
        self._runner.last_error = problem
        if problem.error_class is ErrorClass.WAIT and problem.seconds is not None:
            until = utcnow() + timedelta(seconds=problem.seconds)
            self._runner.set(AccountState.FLOOD_WAIT, problem=problem, wait_until=until)
        elif self._runner.state != AccountState.RECONNECTING:
            self._runner.set(AccountState.RECONNECTING, problem=problem)

    async def _connect_once(self, *, gated: bool) -> None:
        if self._runner.stop.is_set() or not self._context.lease_fresh():
            raise StopRequested  # fenced: the supervisor starts it again once the lease is renewed
        if self.client is None:
            self.client = self._context.client_factory(self.record, self._context.options)
            self._listen(self.client)
        client = self.client
        if client.is_connected():
            await self.disconnect_client(client)
        try:
            if gated:
                async with self._context.start_gate:
                    await self._open(client)
            else:
                await self._open(client)
        except BaseException:
            await self.disconnect_client(client)
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
            if me.id != self.me_id:
                # Every worker must know this account before it can send anything.
                try:
                    await asyncio.wait_for(
                        self._context.learn_identity(self._runner.account_id, me.id, me.username),
                        timeout,
                    )
                except (asyncio.CancelledError, TimeoutError):
                    raise
                except Exception as exc:
                    msg = f"could not store the account's identity ({type(exc).__name__})"
                    raise ConnectionError(msg) from exc
            elif me.username != self.username:
                self._context.writer.identity(self._runner.account_id, me.id, me.username)
            self.me_id = me.id
            self.username = me.username
            self.info = AccountInfo(
                id=self._runner.account_id,
                label=self._runner.label,
                username=me.username,
                first_name=me.first_name,
                tg_user_id=me.id,
            )

    async def wait_disconnected(self) -> BaseException | None:
        """Wait until the connection drops (its error) or a stop is asked (None)."""
        client = self.client
        if client is None:
            return ConnectionError("no client")
        stop = asyncio.create_task(self._runner.stop.wait())
        dropped = asyncio.ensure_future(client.disconnected)
        try:
            done, _ = await asyncio.wait({stop, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            dropped.cancel()
        if self._runner.stop.is_set():
            return None
        error: BaseException | None = None
        if dropped in done and not dropped.cancelled():
            error = dropped.exception()
        return error or ConnectionError("the connection closed")

    async def disconnect(self) -> None:
        """Disconnect the client (if any) and write its session back."""
        client = self.client
        if client is None:
            return
        await self.disconnect_client(client)
        await self.write_back(client)

    async def disconnect_client(
        self,
        client: TelegramClient,
        *,
        timeout: float = DISCONNECT_TIMEOUT,  # noqa: ASYNC109 - bounded by design
    ) -> None:
        """Disconnect within ``timeout``; a failure is logged, never raised."""
        try:
            await asyncio.wait_for(client.disconnect(), timeout)
        except Exception as exc:  # disconnecting must never raise out of a runner
            log.debug(
                "worker.disconnect_failed", account=self._runner.label, error=type(exc).__name__
            )

    async def write_back(self, client: TelegramClient) -> None:
        """Store the client's session if it changed (a DC or key switch); a failure is logged."""
        changed = changed_record(client, self.record)
        if changed is None:
            return
        try:
            version = await self._context.write_back(
                self._runner.account_id, changed, self._runner.secret_version
            )
        except Exception as exc:
            log.error(
                "worker.write_back_failed", account=self._runner.label, error=type(exc).__name__
            )
            return
        if version is not None:
            self.record = changed
            self._runner.secret_version = version

    async def record_groups_once(self) -> None:
        """List the client's groups once per runner (a failure tries again next connect)."""
        if self._groups_recorded or self.client is None:
            return
        self._groups_recorded = True
        try:
            dialogs = await asyncio.wait_for(
                self.client.get_dialogs(limit=500), self._context.request_timeout
            )
        except Exception as exc:
            log.info("worker.dialogs_failed", account=self._runner.label, error=type(exc).__name__)
            self._groups_recorded = False
            return
        found = {int(d.id): d.name for d in dialogs if d.is_group}
        if found:
            self._context.writer.groups_found(self._runner.account_id, found)

    async def hold(self, problem: Classification) -> None:
        """Quarantine (or retire): disconnect for good and never reconnect."""
        self._runner.stop.set()
        await self.disconnect()
        reason = problem.reason
        metrics.QUARANTINES.labels(reason).inc()
        self._runner.set(AccountState.QUARANTINED, problem=problem, reason=reason)
        log.warning(
            "worker.quarantined", account=self._runner.label, code=problem.code, reason=reason
        )
