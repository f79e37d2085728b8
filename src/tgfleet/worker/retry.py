"""Retries at one layer, with a budget.

The supervisor retries connecting (and transient failures) here and nowhere else: the
Telethon client is built with its own retries turned down, so attempts do not multiply.
Every retry costs a token from a per-worker :class:`TokenBucket`; when the bucket is empty
the retry waits for a token instead of hammering Telegram. Backoff is full jitter
(``uniform(0, min(cap, base * 2**(n-1)))`` after the n-th failed attempt), and there is
always an explicit stop, because tenacity's defaults retry forever.

Use one policy per call (tenacity keeps per-call state on the object):

    policy = reconnect_policy(budget=bucket, stop_event=stopping, max_attempts=None,
                              retry_if=lambda e: classify(e).error_class is ErrorClass.TRANSIENT)
    await policy(client.connect)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

import tenacity
from tenacity import RetryCallState

__all__ = ["TokenBucket", "full_jitter_wait", "reconnect_policy"]

# Float slack when a head waiter wakes up exactly when its token is due.
_EPSILON: Final = 1e-9


class TokenBucket:
    """Per-worker retry budget: `capacity` tokens, refilled continuously at `refill_per_second`.

    The bucket starts full. :meth:`take` serves waiters first come, first served; a
    :meth:`try_take` never jumps that queue. A waiter that is cancelled leaves the queue
    without having taken a token, so cancellation neither loses nor leaks tokens.
    ``sleep`` is injectable so tests can drive time with the same fake as ``clock``.
    """

    def __init__(
        self,
        capacity: int,
        refill_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if not (refill_per_second > 0 and math.isfinite(refill_per_second)):
            raise ValueError("refill_per_second must be a positive, finite number")
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(capacity)
        self._refilled_at = clock()
        self._waiters: deque[asyncio.Event] = deque()
        #: Tokens handed out, by either method.
        self.taken_total = 0
        #: Takes that had to wait for a token.
        self.waited_total = 0

    @property
    def available(self) -> float:
        """Tokens in the bucket now (fractional while refilling)."""
        self._refill()
        return self._tokens

    @property
    def waiting(self) -> int:
        """Callers of :meth:`take` queued for a token."""
        return len(self._waiters)

    def try_take(self) -> bool:
        """Take a token if one is free and nobody is queued for it."""
        if self._waiters or not self._take_if_available():
            return False
        self.taken_total += 1
        return True

    async def take(self) -> float:
        """Wait until a token is ours, in arrival order; return the seconds waited."""
        if not self._waiters and self._take_if_available():
            self.taken_total += 1
            return 0.0
        started = self._clock()
        turn = asyncio.Event()  # set when this waiter reaches the head of the queue
        self._waiters.append(turn)
        try:
            while True:
                if self._waiters[0] is not turn:
                    await turn.wait()
                    continue
                # Check and take with no await in between: a cancellation lands either
                # before the token is ours or after take() has returned it.
                if self._take_if_available():
                    break
                await self._sleep((1.0 - self._tokens) / self.refill_per_second)
        finally:
            was_head = self._waiters[0] is turn
            self._waiters.remove(turn)
            if was_head and self._waiters:
                self._waiters[0].set()
        self.taken_total += 1
        self.waited_total += 1
        return self._clock() - started

    def _take_if_available(self) -> bool:
        self._refill()
        if self._tokens < 1.0 - _EPSILON:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(float(self.capacity), self._tokens + elapsed * self.refill_per_second)
        self._refilled_at = now


def full_jitter_wait(base: float = 1.0, cap: float = 60.0) -> tenacity.wait.wait_base:
    """Full jitter: after the n-th failed attempt, wait ``uniform(0, min(cap, base*2**(n-1)))``."""
    return tenacity.wait_random_exponential(multiplier=base, max=cap)


class _StopWhenSet(tenacity.stop.stop_base):
    """Stop retrying once the worker is shutting down."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:  # noqa: ARG002 (tenacity's signature)
        return self._event.is_set()


# Where a call's latest retried exception is kept, so a shutdown noticed between attempts
# can end the call the way a stop does (re-raising it): tenacity clears `outcome` before the
# sleep and the `before` hook run. It lives on the per-call state itself (not in a side
# table keyed by it: the exception's traceback references that state, which would keep a
# weak-keyed entry alive forever), so copies of a policy never see each other's errors.
_LAST_ERROR_ATTR: Final = "_tgfleet_last_error"


def _remember_error(retry_state: RetryCallState, exc: BaseException) -> None:
    vars(retry_state)[_LAST_ERROR_ATTR] = exc


def _forget_error(retry_state: RetryCallState) -> BaseException | None:
    error = vars(retry_state).pop(_LAST_ERROR_ATTR, None)
    return error if isinstance(error, BaseException) else None


class _RetryIfException(tenacity.retry_base):
    """``retry_if_exception`` that never retries a ``BaseException`` such as cancellation.

    tenacity captures ``BaseException`` from an attempt and asks the retry strategy about
    it; a ``CancelledError`` must go back to the caller untouched, without ever reaching a
    predicate like :func:`~tgfleet.worker.classify.classify`, which refuses it.
    """

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if not isinstance(exc, Exception):
            return False
        if not self._predicate(exc):
            return False
        _remember_error(retry_state, exc)
        return True


def reconnect_policy(
    *,
    budget: TokenBucket,
    stop_event: asyncio.Event | None,
    max_attempts: int | None,
    base: float = 1.0,
    cap: float = 60.0,
    retry_if: Callable[[BaseException], bool],
    wait: Callable[[RetryCallState], float] | None = None,
    before_sleep: Callable[[RetryCallState], Awaitable[None]] | None = None,
) -> tenacity.AsyncRetrying:
    """An ``AsyncRetrying`` for one call: budgeted, jittered, and stopped explicitly.

    - stops after ``max_attempts`` attempts (the first call counts), or once ``stop_event``
      is set, whichever comes first; at least one of them is required;
    - retries only exceptions for which ``retry_if`` is true (never a ``CancelledError``);
    - waits full jitter between attempts, then takes a token from ``budget`` before each
      attempt after the first; the first attempt is free;
    - a ``stop_event`` set during the backoff or the wait for a token ends the call at once
      with the last attempt's exception, without another attempt;
    - re-raises the last exception rather than wrapping it in ``RetryError``;
    - ``wait`` replaces the full-jitter wait (the runner waits a flood wait's own seconds
      and falls back to full jitter), ``before_sleep`` reports each failed attempt.
    """
    if max_attempts is None and stop_event is None:
        raise ValueError("give max_attempts or stop_event: tenacity alone retries forever")
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts counts the first attempt and must be at least 1")

    stops: list[tenacity.stop.stop_base] = []
    if max_attempts is not None:
        stops.append(tenacity.stop_after_attempt(max_attempts))
    if stop_event is not None:
        stops.append(_StopWhenSet(stop_event))

    async def sleep(seconds: float) -> None:
        if stop_event is None:
            await asyncio.sleep(seconds)
            return
        if stop_event.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await stop_event.wait()

    async def before(retry_state: RetryCallState) -> None:
        if retry_state.attempt_number == 1:
            return
        last_error = _forget_error(retry_state)
        if stop_event is None:
            await budget.take()
            return
        if not stop_event.is_set():
            await _first_of(budget.take(), stop_event)
        # Without a remembered error (a TryAgain, or a retry strategy swapped by copy())
        # the attempt runs and the stop check after it ends the call.
        if stop_event.is_set() and last_error is not None:
            # A token taken in the same instant is spent: the bucket gives none back.
            raise last_error

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_any(*stops),
        wait=wait if wait is not None else full_jitter_wait(base, cap),
        retry=_RetryIfException(retry_if),
        before=before,
        before_sleep=before_sleep,
        reraise=True,
    )


async def _first_of(work: Awaitable[object], stop_event: asyncio.Event) -> None:
    """Await ``work`` unless ``stop_event`` is set first; then cancel it and wait for that."""
    work_task = asyncio.ensure_future(work)
    stop_task = asyncio.ensure_future(stop_event.wait())
    tasks = {work_task, stop_task}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # Let a cancelled take() leave the bucket's queue before we go on.
        await asyncio.gather(*tasks, return_exceptions=True)
    if not work_task.cancelled() and (error := work_task.exception()) is not None:
        raise error
