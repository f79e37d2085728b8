"""One runner's state: where the account is in the state machine, and whether to stop.

An :class:`~tgfleet.worker.runner.AccountRunner`, its
:class:`~tgfleet.worker.connection.Connection` and its
:class:`~tgfleet.worker.replies.Replies` share one :class:`RunnerState`: each transition and
timeline event goes through it to the worker's :class:`~tgfleet.worker.status.StatusWriter`,
and a stop request reaches every wait of all three.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from tgfleet import metrics
from tgfleet.account.runtime import DesiredAccount, StateChange, TimelineEvent, allowed
from tgfleet.account.schemas import HELD_STATES
from tgfleet.kit.clock import utcnow
from tgfleet.logging import get_logger
from tgfleet.models import AccountState
from tgfleet.worker.classify import Classification, classify
from tgfleet.worker.context import WorkerContext

#: The runner's log lines keep the logger they always had.
log = get_logger("tgfleet.worker.runner")


class RunnerState:
    """The account's state as reported, its last error, and the runner's stop request."""

    def __init__(
        self, account: DesiredAccount, secret_version: int, context: WorkerContext
    ) -> None:
        self.account_id = account.id
        self.label = account.label
        self.restart_seq = account.restart_seq
        #: The version of the secret the runner's session came from (moved by a write-back).
        self.secret_version = secret_version
        self.state: AccountState = AccountState.STOPPED
        self.last_error: Classification | None = None
        self.stop = asyncio.Event()
        self._context = context

    def set(
        self,
        state: AccountState,
        *,
        problem: Classification | None = None,
        reason: str | None = None,
        wait_until: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Move to ``state`` and report it (a repeat is dropped, except a new flood wait)."""
        previous = self.state
        if previous == state and state != AccountState.FLOOD_WAIT:
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
                if state in {AccountState.STOPPED, *HELD_STATES}
                else self._context.worker_id,
                reason=reason or (problem.reason if problem else None),
                error_code=problem.code if problem else None,
                error_message=problem.message if problem else None,
                wait_until=wait_until,
                restart_seq=self.restart_seq if state == AccountState.STARTING else None,
                secret_version=self.secret_version if state == AccountState.STARTING else None,
                details=details or {},
                source=self._context.worker_id,
            )
        )

    def event(self, kind: str, code: str | None, message: str | None, **details: Any) -> None:
        """Add an event to the account's timeline."""
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

    async def sleep(self, seconds: float) -> None:
        """Sleep, returning early when a stop is asked."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)


def classify_met(error: BaseException) -> Classification:
    """Classify an error a client met, and count it (``tgfleet_errors_total``)."""
    problem = classify(error)
    metrics.ERRORS.labels(problem.error_class.value, problem.reason).inc()
    return problem
