"""One account's life in a worker: connect, stay online, answer, recover, stop.

An :class:`AccountRunner` walks the state machine of DESIGN §4 for one account; its parts
act: a :class:`~tgfleet.worker.connection.Connection` owns the Telethon client (connect,
authorise, reconnect, hold, write the session back), the account's
:class:`~tgfleet.worker.replies.Replies` answer its groups, and both report through the
:class:`~tgfleet.worker.runner_state.RunnerState` they share with the runner. Every network
await has a timeout; every failure is classified (:mod:`tgfleet.worker.classify`) and
handled by class:

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

from telethon import TelegramClient

from tgfleet import metrics
from tgfleet.account.runtime import DesiredAccount
from tgfleet.account.schemas import HELD_STATES
from tgfleet.logging import get_logger
from tgfleet.models import AccountState
from tgfleet.vault.formats import CanonicalSession
from tgfleet.worker.classify import Classification, ErrorClass
from tgfleet.worker.connection import AccountHeld, Connection, StopRequested
from tgfleet.worker.context import ClientFactory, LearnIdentity, WorkerContext, WriteBack
from tgfleet.worker.replies import Replies
from tgfleet.worker.runner_state import RunnerState, classify_met

__all__ = ["AccountRunner", "ClientFactory", "LearnIdentity", "WorkerContext", "WriteBack"]

log = get_logger(__name__)

CANCELLED_DISCONNECT_TIMEOUT = 1.0


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
        self._context = context
        self._runner = RunnerState(account, secret_version, context)
        self._connection = Connection(self._runner, account, record, context, listen=self._listen)
        self._replies = Replies(self._runner, self._connection, context)
        self.reconnects = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        return self._runner.state

    @property
    def last_error(self) -> Classification | None:
        return self._runner.last_error

    @property
    def secret_version(self) -> int:
        """The version of the secret the session came from (moved by a write-back)."""
        return self._runner.secret_version

    def _listen(self, client: TelegramClient) -> None:
        """Wire a new client's updates to the replies (the client is made at first connect)."""
        self._replies.listen(client)

    # ------------------------------------------------------------------ control

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self.run(), name=f"account:{self.label}")
        return self.task

    def request_stop(self) -> None:
        self._runner.stop.set()

    @property
    def held(self) -> bool:
        return self._runner.state in HELD_STATES

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded by design
        """Ask the runner to stop and wait for it (cancelling it after ``timeout``)."""
        self._runner.stop.set()
        if self.task is None:
            return
        done, _ = await asyncio.wait({self.task}, timeout=timeout)
        if not done:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    # ------------------------------------------------------------------ life

    async def run(self) -> None:
        runner, connection = self._runner, self._connection
        runner.set(AccountState.STARTING)
        try:
            first = True
            while not runner.stop.is_set():
                await connection.connect_with_retries(first=first)
                first = False
                if runner.state != AccountState.ONLINE:
                    runner.set(AccountState.ONLINE)  # also after a flood wait met while connecting
                await connection.record_groups_once()
                if connection.client is not None:
                    await connection.write_back(connection.client)  # a DC switch while connecting
                error = await connection.wait_disconnected()
                if error is None:
                    break  # asked to stop
                problem = classify_met(error)
                runner.last_error = problem
                if problem.error_class in {ErrorClass.QUARANTINE, ErrorClass.RETIRE}:
                    await connection.hold(problem)
                    return
                self.reconnects += 1
                metrics.RECONNECTS.inc()
                self._context.writer.count(self.account_id, reconnects=1)
                runner.set(AccountState.RECONNECTING, problem=problem)
        except StopRequested:
            pass
        except AccountHeld:
            return
        except asyncio.CancelledError:
            if connection.client is not None:  # cancelled at shutdown: a short, last disconnect
                await connection.disconnect_client(
                    connection.client, timeout=CANCELLED_DISCONNECT_TIMEOUT
                )
            self._finish_stopped()
            raise
        except Exception as exc:  # a bug must not take the worker down: record it
            log.exception("worker.runner_crashed", account=self.label)
            problem = classify_met(exc)
            runner.last_error = problem
            await connection.disconnect()
            runner.set(AccountState.ERROR, problem=problem)
            return
        await connection.disconnect()
        self._finish_stopped()

    def _finish_stopped(self) -> None:
        runner = self._runner
        if runner.state in HELD_STATES or runner.state == AccountState.STOPPED:
            return
        if runner.state != AccountState.STOPPING:
            runner.set(AccountState.STOPPING)
        runner.set(AccountState.STOPPED)
