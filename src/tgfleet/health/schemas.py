"""The health documents: ``application/health+json`` (draft-inadarei-api-health-check-06).

The field names are the draft's (camelCase); these models describe them in the OpenAPI
schema and render them (:meth:`CheckResult.to_json`).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from tgfleet.kit.schema import Schema

MEDIA_TYPE: Final = "application/health+json"


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a health status, not a password
    WARN = "warn"
    FAIL = "fail"


#: Worst first: a document's status is its worst check's.
_SEVERITY: Final = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe of ``statuses`` (pass for none)."""
    found = Status.PASS
    for status in statuses:
        if _SEVERITY[status] > _SEVERITY[found]:
            found = status
    return found


def http_status(status: Status) -> int:
    """pass and warn are 200 (the draft wants 2xx-3xx), fail is 503 (4xx-5xx)."""
    return 503 if status is Status.FAIL else 200


class CheckResult(Schema):
    """One measurement of one component (an element of a ``checks`` array)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    component_id: str | None = Field(default=None, description="e.g. dc2 (several per check)")
    component_type: str = Field(description="component, datastore or system")
    observed_value: Any = Field(default=None, description="null when nothing could be measured")
    observed_unit: str | None = Field(default=None, description="ms, bytes, ratio, workers...")
    status: Status
    time: str = Field(description="RFC 3339: when the value was observed")
    output: str | None = Field(default=None, description="why, on warn or fail")

    def to_json(self) -> dict[str, Any]:
        """The draft's object: optional fields left out when empty, observedValue always."""
        body = self.model_dump(mode="json", by_alias=True)
        return {
            key: value for key, value in body.items() if value is not None or key == "observedValue"
        }


class HealthDocument(Schema):
    """``GET /health``: every component, checked in parallel."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    status: Status
    version: str = Field(description="the tgfleet version")
    service_id: str
    description: str
    checks: dict[str, list[CheckResult]] = Field(description='keyed "component:measurement"')


class ReadinessDocument(Schema):
    """``GET /readyz``: pass or fail per readiness check, and why for those that fail."""

    status: Status
    checks: dict[str, Status]
    output: dict[str, str] | None = Field(default=None, description="present when not ready")


class LivenessDocument(Schema):
    """``GET /livez``: always pass while the process answers."""

    status: Status
