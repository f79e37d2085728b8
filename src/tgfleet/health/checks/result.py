"""Building a check's results: the component types and :func:`result`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from tgfleet.health.schemas import CheckResult, Status
from tgfleet.kit.clock import isoformat, utcnow

DATASTORE: Final = "datastore"
COMPONENT: Final = "component"
SYSTEM: Final = "system"


def result(
    component_type: str,
    status: Status,
    value: Any,
    unit: str | None,
    *,
    component_id: str | None = None,
    output: str | None = None,
    at: datetime | None = None,
) -> CheckResult:
    """One measurement, observed ``at`` (now when not given)."""
    return CheckResult(
        component_id=component_id,
        component_type=component_type,
        observed_value=value,
        observed_unit=unit,
        status=status,
        time=isoformat(at if at is not None else utcnow()),
        output=output,
    )
