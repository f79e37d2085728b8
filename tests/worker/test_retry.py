"""Retry budget, full-jitter backoff and the reconnect policy's stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import tenacity
from tenacity import RetryCallState

from tgfleet.worker.classify import ErrorClass, classify
from tgfleet.worker.retry import TokenBucket, full_jitter_wait, reconnect_policy

# Backoff short enough that only the budget can hold a retry back.
TINY = 0.001


class ManualClock:
    """A monotonic clock and a sleep that only the test moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wakeup = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, wakeup)
        self._sleepers.append(entry)
        try:
            await wakeup
        finally:
            self._sleepers.remove(entry)

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, wakeup in list(self._sleepers):
            if deadline <= self.now + 1e-9 and not wakeup.done():
                wakeup.set_result(None)
        await settle()


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(20):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], within: float = 1.0) -> None:
    """Wait in real time for ``condition`` about the code under test, at most ``within``."""
    async with asyncio.timeout(within):
        # ASYNC110: the state polled belongs to the code under test, which sets no event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(TINY)


def made_calls(operation: Flaky, count: int) -> Callable[[], bool]:
    return lambda: len(operation.calls) == count


def bucket(capacity: int, refill: float, clock: ManualClock) -> TokenBucket:
    return TokenBucket(capacity, refill, clock=clock, sleep=clock.sleep)


async def two_queued_takers(
    clock: ManualClock,
) -> tuple[TokenBucket, asyncio.Task[float], asyncio.Task[float]]:
    """An empty one-token bucket (refilled once a second) and two takers queued, in order."""
    budget = bucket(1, 1.0, clock)
    assert budget.try_take()
    first = asyncio.create_task(budget.take())
    await settle()
    second = asyncio.create_task(budget.take())
    await settle()
    return budget, first, second


def always(exc: BaseException) -> bool:
    return True


def transient(exc: BaseException) -> bool:
    return classify(exc).error_class is ErrorClass.TRANSIENT


class Flaky:
    """An operation that fails with a fresh ``ConnectionError`` ``failures`` times."""

    def __init__(self, failures: int = 1_000_000, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.clock = clock
        self.calls: list[float] = []
        self.raised: list[BaseException] = []

    async def __call__(self) -> str:
        self.calls.append(self.clock())
        if len(self.calls) <= self.failures:
            error = ConnectionError(f"attempt {len(self.calls)}")
            self.raised.append(error)
            raise error
        return "connected"


class TestTokenBucket:
    def test_starts_full_and_try_take_empties_it(self) -> None:
        """``capacity`` tokens are free at once; the next try fails and counts nothing."""
        clock = ManualClock()
        budget = bucket(3, 1.0, clock)

        assert [budget.try_take() for _ in range(4)] == [True, True, True, False]
        assert budget.available == 0.0
        assert (budget.taken_total, budget.waited_total) == (3, 0)

    def test_refills_continuously_up_to_capacity(self) -> None:
        """Tokens come back at ``refill_per_second``, fractionally, never above capacity."""
        clock = ManualClock()
        budget = bucket(2, 4.0, clock)
        assert budget.try_take()
        assert budget.try_take()

        clock.now = 0.125
        assert budget.available == pytest.approx(0.5)
        clock.now = 100.0
        assert budget.available == 2.0

    @pytest.mark.timeout(2)
    async def test_take_waits_for_the_next_token(self) -> None:
        """With the bucket empty, ``take`` returns only once a whole token has refilled."""
        clock = ManualClock()
        budget = bucket(1, 2.0, clock)
        assert await budget.take() == 0.0

        waiter = asyncio.create_task(budget.take())
        await settle()
        await clock.advance(0.4)
        assert not waiter.done()
        await clock.advance(0.1)

        assert waiter.done()
        assert await waiter == pytest.approx(0.5)
        assert (budget.taken_total, budget.waited_total) == (2, 1)

    @pytest.mark.timeout(2)
    async def test_waiters_are_served_in_arrival_order(self) -> None:
        """Three queued takers get the next three tokens first come, first served."""
        clock = ManualClock()
        budget = bucket(1, 1.0, clock)
        assert budget.try_take()
        served: list[str] = []

        async def taker(name: str) -> None:
            await budget.take()
            served.append(name)

        tasks = []
        for name in ("a", "b", "c"):
            tasks.append(asyncio.create_task(taker(name)))
            await settle()
        for _ in range(3):
            await clock.advance(1.0)

        await asyncio.gather(*tasks)
        assert served == ["a", "b", "c"]

    @pytest.mark.timeout(2)
    async def test_try_take_does_not_jump_the_queue(self) -> None:
        """A token due to a queued waiter is not handed to a ``try_take`` that comes later."""
        clock = ManualClock()
        budget = bucket(1, 1.0, clock)
        assert budget.try_take()
        waiter = asyncio.create_task(budget.take())
        await settle()

        clock.now = 1.0  # the token is there, the waiter has not woken up yet
        assert budget.available == 1.0
        assert not budget.try_take()
        await clock.advance(0.0)

        assert waiter.done()
        assert budget.available == 0.0

    @pytest.mark.timeout(2)
    async def test_cancelled_head_waiter_hands_its_turn_on(self) -> None:
        """Cancelling the first waiter takes no token; the next waiter gets the next one."""
        clock = ManualClock()
        budget, first, second = await two_queued_takers(clock)

        first.cancel()
        await settle()
        assert first.cancelled()
        assert budget.waiting == 1
        await clock.advance(1.0)

        assert await second == pytest.approx(1.0)
        assert budget.available == 0.0
        assert budget.taken_total == 2

    @pytest.mark.timeout(2)
    async def test_cancelled_queued_waiter_leaks_nothing(self) -> None:
        """A cancelled waiter behind the head leaves the queue; its token stays in the bucket."""
        clock = ManualClock()
        budget, first, second = await two_queued_takers(clock)

        second.cancel()
        await clock.advance(1.0)
        assert second.cancelled()
        await first
        await clock.advance(1.0)

        assert budget.waiting == 0
        assert budget.available == 1.0
        assert budget.taken_total == 2

    @pytest.mark.timeout(2)
    async def test_real_clock_and_sleep(self) -> None:
        """With the default clock and ``asyncio.sleep``, an empty bucket really waits."""
        budget = TokenBucket(1, 50.0)
        assert await budget.take() == 0.0

        waited = await budget.take()

        assert 0.015 <= waited < 1.0
        assert budget.waited_total == 1

    @pytest.mark.parametrize(("capacity", "refill"), [(0, 1.0), (1, 0.0), (1, -1.0)])
    def test_rejects_a_bucket_that_never_gives(self, capacity: int, refill: float) -> None:
        """No capacity or no refill would make every retry wait forever."""
        with pytest.raises(ValueError, match="must be"):
            TokenBucket(capacity, refill)


class TestFullJitterWait:
    @pytest.mark.parametrize(
        ("base", "cap", "attempt", "bound"),
        [
            (1.0, 60.0, 1, 1.0),
            (1.0, 60.0, 3, 4.0),
            (1.0, 60.0, 6, 32.0),
            (1.0, 60.0, 7, 60.0),
            (1.0, 60.0, 30, 60.0),
            (0.5, 3.0, 4, 3.0),
        ],
    )
    def test_uniform_up_to_min_of_cap_and_exponential(
        self, base: float, cap: float, attempt: int, bound: float
    ) -> None:
        """After the n-th failure the wait is in [0, min(cap, base*2**(n-1))], spread over it."""
        policy = reconnect_policy(
            budget=TokenBucket(1, 1.0),
            stop_event=None,
            max_attempts=3,
            base=base,
            cap=cap,
            retry_if=always,
        )
        state = RetryCallState(policy, fn=None, args=(), kwargs={})
        state.attempt_number = attempt

        waits = [policy.wait(state) for _ in range(300)]
        direct = [full_jitter_wait(base, cap)(state) for _ in range(300)]

        for samples in (waits, direct):
            assert all(0.0 <= wait <= bound for wait in samples)
            assert max(samples) > 0.75 * bound
            assert min(samples) < 0.25 * bound


class TestReconnectPolicy:
    @pytest.mark.timeout(2)
    async def test_max_attempts_counts_the_first_call_and_reraises(self) -> None:
        """Three attempts, then the last ``ConnectionError`` itself; two retries paid for."""
        budget = TokenBucket(10, 1.0)
        operation = Flaky()
        policy = reconnect_policy(
            budget=budget, stop_event=None, max_attempts=3, base=TINY, cap=TINY, retry_if=always
        )

        with pytest.raises(ConnectionError) as raised:
            await policy(operation)

        assert raised.value is operation.raised[-1]
        assert len(operation.calls) == 3
        assert budget.taken_total == 2

    @pytest.mark.timeout(2)
    async def test_returns_the_result_once_an_attempt_succeeds(self) -> None:
        """Two failures, then success: the caller gets the value."""
        operation = Flaky(failures=2)
        policy = reconnect_policy(
            budget=TokenBucket(10, 1.0),
            stop_event=asyncio.Event(),
            max_attempts=None,
            base=TINY,
            cap=TINY,
            retry_if=transient,
        )

        assert await policy(operation) == "connected"
        assert len(operation.calls) == 3

    @pytest.mark.timeout(2)
    async def test_works_as_an_async_for_loop(self) -> None:
        """The ``async for attempt in policy`` form retries and stops the same way."""
        operation = Flaky()
        policy = reconnect_policy(
            budget=TokenBucket(10, 1.0),
            stop_event=None,
            max_attempts=2,
            base=TINY,
            cap=TINY,
            retry_if=always,
        )

        async def connect() -> None:
            async for attempt in policy:
                with attempt:
                    await operation()

        with pytest.raises(ConnectionError):
            await connect()
        assert len(operation.calls) == 2

    @pytest.mark.timeout(2)
    async def test_does_not_retry_what_retry_if_rejects(self) -> None:
        """A quarantine-class error is raised after one attempt and costs no budget."""
        budget = TokenBucket(10, 1.0)
        calls = 0

        async def revoked() -> None:
            nonlocal calls
            calls += 1
            raise PermissionError("session file is read-only")

        policy = reconnect_policy(
            budget=budget, stop_event=None, max_attempts=5, base=TINY, cap=TINY, retry_if=transient
        )

        with pytest.raises(PermissionError):
            await policy(revoked)

        assert calls == 1
        assert budget.taken_total == 0

    @pytest.mark.timeout(2)
    async def test_retries_beyond_the_budget_wait_for_tokens(self) -> None:
        """With two tokens, the third retry waits a refill interval instead of hammering."""
        clock = ManualClock()
        budget = bucket(2, 1.0, clock)
        operation = Flaky(clock=clock)
        policy = reconnect_policy(
            budget=budget, stop_event=None, max_attempts=6, base=TINY, cap=TINY, retry_if=always
        )
        task: asyncio.Task[str] = asyncio.create_task(policy(operation))

        await until(made_calls(operation, 3))
        await asyncio.sleep(0.05)  # dozens of backoff intervals: it must stay blocked
        assert len(operation.calls) == 3
        for expected in (4, 5, 6):
            await until(lambda: budget.waiting == 1)
            await clock.advance(1.0)
            await until(made_calls(operation, expected))

        with pytest.raises(ConnectionError):
            await task
        assert operation.calls == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]
        assert (budget.taken_total, budget.waited_total) == (5, 3)

    @pytest.mark.timeout(2)
    async def test_stop_event_cuts_a_long_backoff_short(self) -> None:
        """Shutdown during a 60 s backoff ends the call at once, with no further attempt."""
        budget = TokenBucket(10, 1.0)
        stopping = asyncio.Event()
        operation = Flaky()
        policy = reconnect_policy(
            budget=budget, stop_event=stopping, max_attempts=None, retry_if=always
        ).copy(wait=tenacity.wait_fixed(60))
        task: asyncio.Task[str] = asyncio.create_task(policy(operation))
        await until(made_calls(operation, 1))
        await asyncio.sleep(0.02)

        started = time.monotonic()
        stopping.set()
        with pytest.raises(ConnectionError) as raised:
            await task

        assert time.monotonic() - started < 0.5
        assert raised.value is operation.raised[0]
        assert len(operation.calls) == 1
        assert budget.taken_total == 0

    @pytest.mark.timeout(2)
    async def test_stop_event_cuts_a_wait_for_budget_short(self) -> None:
        """Shutdown while queued for a token ends the call and leaves the bucket's queue."""
        clock = ManualClock()
        budget = bucket(1, 0.001, clock)
        stopping = asyncio.Event()
        operation = Flaky(clock=clock)
        policy = reconnect_policy(
            budget=budget,
            stop_event=stopping,
            max_attempts=None,
            base=TINY,
            cap=TINY,
            retry_if=always,
        )
        task: asyncio.Task[str] = asyncio.create_task(policy(operation))
        await until(lambda: budget.waiting == 1)

        stopping.set()
        with pytest.raises(ConnectionError) as raised:
            await task

        assert raised.value is operation.raised[-1]
        assert len(operation.calls) == 2
        assert budget.waiting == 0
        assert budget.taken_total == 1

    @pytest.mark.timeout(2)
    async def test_stop_event_set_during_an_attempt_stops_after_it(self) -> None:
        """A failure that comes after shutdown began is not retried."""
        stopping = asyncio.Event()
        calls = 0

        async def fails_while_stopping() -> None:
            nonlocal calls
            calls += 1
            stopping.set()
            raise ConnectionError

        policy = reconnect_policy(
            budget=TokenBucket(10, 1.0), stop_event=stopping, max_attempts=None, retry_if=always
        )

        with pytest.raises(ConnectionError):
            await policy(fails_while_stopping)
        assert calls == 1

    @pytest.mark.timeout(2)
    async def test_cancellation_inside_an_attempt_is_never_retried(self) -> None:
        """A cancelled attempt cancels the call; ``retry_if`` (here ``classify``) never sees it."""
        started = asyncio.Event()
        calls = 0

        async def hangs() -> None:
            nonlocal calls
            calls += 1
            started.set()
            await asyncio.Event().wait()

        policy = reconnect_policy(
            budget=TokenBucket(10, 1.0),
            stop_event=asyncio.Event(),
            max_attempts=None,
            retry_if=transient,
        )
        task: asyncio.Task[None] = asyncio.create_task(policy(hangs))
        await started.wait()

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls == 1

    @pytest.mark.timeout(2)
    async def test_cancellation_during_backoff_is_prompt(self) -> None:
        """Cancelling a call that sleeps a 60 s backoff ends it at once."""
        operation = Flaky()
        policy = reconnect_policy(
            budget=TokenBucket(10, 1.0),
            stop_event=asyncio.Event(),
            max_attempts=None,
            retry_if=always,
        ).copy(wait=tenacity.wait_fixed(60))
        task: asyncio.Task[str] = asyncio.create_task(policy(operation))
        await until(made_calls(operation, 1))

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(operation.calls) == 1

    def test_requires_an_explicit_stop(self) -> None:
        """Without ``max_attempts`` or ``stop_event`` it would retry forever: refused."""
        with pytest.raises(ValueError, match="retries forever"):
            reconnect_policy(
                budget=TokenBucket(1, 1.0), stop_event=None, max_attempts=None, retry_if=always
            )

    def test_max_attempts_counts_the_first_call(self) -> None:
        """Zero attempts is not a policy."""
        with pytest.raises(ValueError, match="at least 1"):
            reconnect_policy(
                budget=TokenBucket(1, 1.0), stop_event=None, max_attempts=0, retry_if=always
            )
