"""What every integration shares: the delivery policy, retries, its secrets kept out of what it
reports (:mod:`._secrets`), metrics, and the :class:`Receiver` that fans a notification out to
its integrations."""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import httpx
import tenacity
from tenacity import RetryCallState

from tgfleet.alert.receivers._prepared import Prepared, prepare
from tgfleet.alert.receivers._secrets import REDACTED, protect_secrets, scrub
from tgfleet.alert.schemas import DeliveryResult, Notification
from tgfleet.logging import get_logger
from tgfleet.metrics import ALERT_LAST_DELIVERY, ALERT_NOTIFICATION_DURATION, ALERT_NOTIFICATIONS

log = get_logger("tgfleet.alert.receivers")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard one integration tries to deliver one notification.

    - ``attempt_timeout``: seconds for one HTTP request (an integration's ``timeout``
      setting replaces it);
    - ``deadline``: seconds for the whole delivery, retries and every message included;
    - ``max_attempts``: tries per request, the first included;
    - ``backoff_base``/``backoff_cap``: full-jitter backoff between tries of a failed
      request, ``uniform(0, min(cap, base * 2**(n-1)))`` after the n-th;
    - ``max_retry_after``: the longest wait a server may ask for (Telegram's
      ``retry_after``, a ``Retry-After`` header); a longer one fails the delivery at once
      rather than block it.
    """

    attempt_timeout: float = 10.0
    deadline: float = 120.0
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 15.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first attempt and must be at least 1")
        for name in ("attempt_timeout", "deadline", "max_retry_after"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ValueError("backoff_base and backoff_cap must not be negative")


class Retryable(Exception):
    """A transient failure: try again, after ``retry_after`` seconds when the server said."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.status_code = status_code


class Permanent(Exception):
    """A failure that another try would repeat (a 4xx, a bad template, a missing file)."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


async def read_secret_file(path: Path, setting: str) -> str:
    """A secret file's stripped content, read off the event loop at each delivery (a
    rotated token is picked up without a restart, as in Alertmanager)."""
    try:
        content = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Permanent(f"cannot read {setting} {path}: {type(exc).__name__}") from None
    content = content.strip()
    if not content:
        raise Permanent(f"{setting} {path} is empty")
    return content


# --------------------------------------------------------------------------- integrations


@dataclass(slots=True)
class _Progress:
    """One delivery's running count (a local per call: no state shared between calls)."""

    deadline_at: float | None = None
    attempts: int = 0
    messages: int = 0
    status_code: int | None = None
    detail: dict[str, object] = field(default_factory=dict)


class _StopBeforeDeadline(tenacity.stop.stop_base):
    """Stop when the next try would start after the deadline."""

    def __init__(self, deadline_at: float) -> None:
        self._deadline_at = deadline_at

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self._deadline_at


class IntegrationConfig(Protocol):
    """What every integration's settings say: whether resolved alerts are sent, and the
    timeout of one HTTP attempt (none or 0: the policy's)."""

    @property
    def send_resolved(self) -> bool: ...

    @property
    def timeout(self) -> timedelta | None: ...


ConfigT = TypeVar("ConfigT", bound=IntegrationConfig)


class Integration(ABC, Generic[ConfigT]):
    """One destination of a receiver (a chat, a URL) configured by a ``ConfigT``; delivers
    with retries and never raises for a failed delivery: it answers with a
    :class:`DeliveryResult`."""

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        receiver: str,
        index: int,
        config: ConfigT,
        http: httpx.AsyncClient,
        policy: DeliveryPolicy,
    ) -> None:
        self.receiver = receiver
        self.index = index
        self.send_resolved = config.send_resolved
        self._config = config
        self._http = http
        self._policy = policy
        timeout = config.timeout.total_seconds() if config.timeout else None
        self._attempt_timeout = timeout or policy.attempt_timeout
        self._secrets: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} receiver={self.receiver!r} index={self.index}>"

    def _add_secret(self, secret: str) -> None:
        self._add_secrets({secret: REDACTED})

    def _add_secrets(self, secrets: Mapping[str, str]) -> None:
        fresh = {s: shown for s, shown in secrets.items() if s and s not in self._secrets}
        if fresh:
            self._secrets.update(fresh)
            protect_secrets(fresh)

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    @abstractmethod
    async def _deliver(self, prepared: Prepared, progress: _Progress) -> None:
        """Send ``prepared``; raise :class:`Permanent` or :class:`Retryable` on failure."""

    async def notify(self, notification: Notification) -> DeliveryResult:
        started = time.monotonic()
        prepared = prepare(notification, send_resolved=self.send_resolved)
        if prepared is None:
            skipped = "send_resolved is false and every alert is resolved"
            return self._result(ok=True, progress=_Progress(), detail={"skipped": skipped})
        progress = _Progress(deadline_at=started + self._policy.deadline)
        error: str | None = None
        try:
            async with asyncio.timeout(self._policy.deadline):
                await self._deliver(prepared, progress)
        except Permanent as exc:
            error = self._scrub(exc.reason)
            progress.status_code = exc.status_code or progress.status_code
        except Retryable as exc:
            progress.status_code = exc.status_code or progress.status_code
            tries = "1 attempt" if progress.attempts == 1 else f"{progress.attempts} attempts"
            error = f"{self._scrub(exc.reason)} (gave up after {tries})"
        except TimeoutError:
            error = f"not delivered within the deadline of {self._policy.deadline:g} s"
        except Exception as exc:  # noqa: BLE001 - a bug here must not take the engine down
            error = f"internal error: {type(exc).__name__}"
            # Not log.exception: the traceback goes out scrubbed of secrets, as `stack`.
            log.error(  # noqa: TRY400
                "alert.delivery.crashed",
                receiver=self.receiver,
                integration=self.kind,
                index=self.index,
                error=self._scrub(f"{type(exc).__name__}: {exc}"),
                stack=self._scrub("".join(traceback.format_exception(exc))),
            )
        elapsed = time.monotonic() - started
        ALERT_NOTIFICATION_DURATION.labels(self.receiver).observe(elapsed)
        result = self._result(ok=error is None, progress=progress, error=error)
        fields = {
            "receiver": self.receiver,
            "integration": self.kind,
            "index": self.index,
            "group_key": notification.group_key,
            "attempts": result.attempts,
            "messages": result.messages,
        }
        if result.ok:
            ALERT_NOTIFICATIONS.labels(self.receiver, "sent").inc()
            ALERT_LAST_DELIVERY.set(time.time())
            log.info("alert.delivery.sent", **fields, seconds=round(elapsed, 3))
        else:
            ALERT_NOTIFICATIONS.labels(self.receiver, "failed").inc()
            log.warning(
                "alert.delivery.failed", **fields, error=result.error, seconds=round(elapsed, 3)
            )
        return result

    def _result(
        self,
        *,
        ok: bool,
        progress: _Progress,
        error: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> DeliveryResult:
        merged: dict[str, object] = {"index": self.index, **progress.detail, **(detail or {})}
        if progress.status_code is not None:
            merged["status_code"] = progress.status_code
        return DeliveryResult(
            ok=ok,
            receiver=self.receiver,
            integration=self.kind,
            attempts=progress.attempts,
            messages=progress.messages,
            error=error,
            detail=merged,
        )

    async def _with_retries(self, call: Callable[[], Awaitable[T]], progress: _Progress) -> T:
        """``call`` until it succeeds, fails for good, runs out of tries or of time."""
        stops: list[tenacity.stop.stop_base] = [
            tenacity.stop_after_attempt(self._policy.max_attempts)
        ]
        if progress.deadline_at is not None:
            stops.append(_StopBeforeDeadline(progress.deadline_at))

        async def attempt() -> T:
            progress.attempts += 1
            progress.status_code = None
            try:
                return await call()
            except (Retryable, Permanent) as exc:
                progress.status_code = exc.status_code
                raise

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_any(*stops),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(Retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        result: T = await retrying(attempt)
        return result

    def _wait(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Retryable) and error.retry_after is not None:
            return error.retry_after
        ceiling = min(
            self._policy.backoff_cap,
            self._policy.backoff_base * 2 ** (retry_state.attempt_number - 1),
        )
        return random.uniform(0, ceiling)  # noqa: S311 - backoff jitter, not a secret

    async def _before_sleep(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        ALERT_NOTIFICATIONS.labels(self.receiver, "retried").inc()
        log.info(
            "alert.delivery.retrying",
            receiver=self.receiver,
            integration=self.kind,
            index=self.index,
            attempt=retry_state.attempt_number,
            wait_seconds=round(retry_state.upcoming_sleep, 3),
            reason=self._scrub(error.reason if isinstance(error, Retryable) else repr(error)),
        )

    async def _post_json(self, url: str, body: object, progress: _Progress) -> httpx.Response:
        """POST ``body``; 2xx is success, 429 and 5xx and network errors are retryable,
        any other status is permanent. Does not retry: wrap it in :meth:`_with_retries`."""
        response = await self._post(url, body)
        progress.status_code = response.status_code
        if response.is_success:
            return response
        status = response.status_code
        # Scrubbed before it is cut: a secret across the cut would leak its first half.
        excerpt = self._scrub(response.text[:4000]).strip()[:200]
        reason = f"HTTP {status}: {excerpt}".rstrip(": ")
        if status == 429:
            raise self._rate_limited(reason, _retry_after_header(response), status)
        if status >= 500:
            raise Retryable(reason, status_code=status)
        raise Permanent(reason, status_code=status)

    async def _post(self, url: str, body: object) -> httpx.Response:
        try:
            return await self._http.post(url, json=body, timeout=self._attempt_timeout)
        except httpx.TimeoutException:
            raise Retryable(f"no answer within {self._attempt_timeout:g} s") from None
        except httpx.TransportError as exc:
            detail = self._scrub(str(exc)) or "no detail"
            raise Retryable(f"connection failed: {type(exc).__name__}: {detail}") from None

    def _rate_limited(self, reason: str, retry_after: float | None, status: int) -> Exception:
        wait = 1.0 if retry_after is None else max(retry_after, 0.0)
        if wait > self._policy.max_retry_after:
            return Permanent(
                f"{reason} (the server asks to wait {wait:g} s, longer than the "
                f"{self._policy.max_retry_after:g} s allowed)",
                status_code=status,
            )
        return Retryable(reason, retry_after=wait, status_code=status)


def _retry_after_header(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


# --------------------------------------------------------------------------- receivers


class Receiver:
    """A named set of integrations; :meth:`notify` delivers to all of them concurrently."""

    def __init__(self, name: str, integrations: Sequence[Integration[Any]]) -> None:
        self.name = name
        self.integrations = tuple(integrations)

    @property
    def send_resolved(self) -> bool:
        """Whether any integration wants resolved notices (the engine's dedup asks)."""
        return any(integration.send_resolved for integration in self.integrations)

    def __repr__(self) -> str:
        kinds = ", ".join(f"{i.kind}[{i.index}]" for i in self.integrations)
        return f"<Receiver {self.name!r}: {kinds or 'no integrations'}>"

    async def notify(self, notification: Notification) -> list[DeliveryResult]:
        """One :class:`DeliveryResult` per integration, in configuration order (none for a
        receiver without integrations). Never raises for a failed delivery."""
        if not self.integrations:
            return []
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(i.notify(notification)) for i in self.integrations]
        return [task.result() for task in tasks]
