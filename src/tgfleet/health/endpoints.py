"""Health routes: ``/livez``, ``/readyz``, ``/health`` and its alias ``/healthz``.

They are open (no credentials: probes and load balancers have none) and answer in
``application/health+json`` with ``Cache-Control: no-store``. They reveal component
states, timings, counts and schema revisions, the kind of detail Kubernetes' ``/readyz``
and Spring's ``/actuator/health`` show, but never a secret, a DSN or an exception message
(see docs/health.md). Each asks the process's
:class:`~tgfleet.health.service.HealthService` (its ``tgfleet.components``), so a worker's
own small server can mount this router too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tgfleet.components import AppComponents
from tgfleet.health.schemas import (
    MEDIA_TYPE,
    HealthDocument,
    LivenessDocument,
    ReadinessDocument,
)

router = APIRouter(tags=["health"])

NO_STORE = {"Cache-Control": "no-store"}


class HealthResponse(JSONResponse):
    media_type = MEDIA_TYPE


def _answer(document: dict[str, Any], status_code: int = 200) -> HealthResponse:
    return HealthResponse(document, status_code=status_code, headers=NO_STORE)


def _failing(model: type[Any]) -> dict[int | str, dict[str, Any]]:
    """The 503 of /readyz and /health, for the OpenAPI schema."""
    return {503: {"model": model, "description": "fail", "content": {MEDIA_TYPE: {}}}}


@router.get("/livez", response_class=HealthResponse, response_model=LivenessDocument)
async def livez(components: AppComponents) -> HealthResponse:
    """Liveness: the process and its event loop answer. Never checks the database or any
    other component (a restart would not fix them). For Kubernetes' ``livenessProbe``."""
    return _answer(components.health.live())


@router.get(
    "/readyz",
    response_class=HealthResponse,
    response_model=ReadinessDocument,
    responses=_failing(ReadinessDocument),
)
async def readyz(components: AppComponents) -> HealthResponse:
    """Readiness: the database answers, its schema is one this code runs on (its head, or
    ahead of it by a newer release's additive migrations), the keyring has a usable key,
    and for a worker its lease is fresh; each within
    ``TGFLEET_HEALTH_CHECK_TIMEOUT_SECONDS``. 200 ready, 503 not (``output`` says why).
    For Kubernetes' ``readinessProbe`` and ``startupProbe``."""
    document, status_code = await components.health.ready()
    return _answer(document, status_code)


@router.get(
    "/health",
    response_class=HealthResponse,
    response_model=HealthDocument,
    responses=_failing(HealthDocument),
)
@router.get(
    "/healthz",
    response_class=HealthResponse,
    response_model=HealthDocument,
    responses=_failing(HealthDocument),
)
async def health(components: AppComponents) -> HealthResponse:
    """Every component, checked in parallel with a time limit each, in
    ``application/health+json`` (draft-inadarei-api-health-check-06): checks keyed
    ``component:measurement`` (database, migrations, keyring, disk, workers, fleet online
    ratio, Telegram DCs, alert delivery). 200 for pass and warn, 503 for fail. Cached for
    ``TGFLEET_HEALTH_CACHE_SECONDS``. ``/healthz`` is an alias. Not for liveness probes."""
    document, status_code = await components.health.health()
    return _answer(document, status_code)
