"""Probes for Kubernetes. Open routes: they reveal nothing but up or down."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tgfleet import migrations
from tgfleet.kit.db import ping
from tgfleet.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)

READY_TIMEOUT_SECONDS = 2.0


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process and its event loop answer. Never checks external components."""
    return {"status": "pass"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the database answers within two seconds and its schema is at the
    revision this code expects."""
    checks = {"database": "pass", "migrations": "pass"}
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await ping(engine)
            revision = await migrations.revision_of(engine)
    except Exception as exc:  # noqa: BLE001 - any failure at all means "not ready"
        log.warning("health.not_ready", check="database", error=type(exc).__name__)
        checks = {"database": "fail", "migrations": "fail"}
    else:
        if revision != migrations.head_revision():
            log.warning("health.not_ready", check="migrations", revision=revision)
            checks["migrations"] = "fail"
    ok = all(value == "pass" for value in checks.values())
    return JSONResponse(
        {"status": "pass" if ok else "fail", "checks": checks}, status_code=200 if ok else 503
    )
