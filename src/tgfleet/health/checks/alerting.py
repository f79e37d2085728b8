"""The check of alerting: the outcome of this process's last notification."""

from __future__ import annotations

from tgfleet.health.checks.result import COMPONENT, result
from tgfleet.health.delivery import DeliveryRecord
from tgfleet.health.schemas import CheckResult, Status
from tgfleet.kit.clock import isoformat


async def last_delivery(delivery: DeliveryRecord) -> list[CheckResult]:
    """Pass when nothing was sent yet or the last notification went out; a warning naming
    the failure (and the last success) when it did not."""
    attempt = delivery.last_attempt
    success = delivery.last_success
    last_success = isoformat(success) if success is not None else None
    if attempt is None:
        return [result(COMPONENT, Status.PASS, None, None, output="no notification sent yet")]
    if attempt.ok:
        return [result(COMPONENT, Status.PASS, last_success, None, at=attempt.at)]
    return [
        result(
            COMPONENT,
            Status.WARN,
            last_success,
            None,
            output=f"the last notification failed at {isoformat(attempt.at)} "
            f"({attempt.error or 'unknown error'})",
            at=attempt.at,
        )
    ]
