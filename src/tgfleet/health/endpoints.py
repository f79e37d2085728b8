"""Probes for Kubernetes. Open routes: they reveal nothing but up or down."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

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
    """Ready for traffic: the database answers within two seconds."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await ping(request.app.state.engine)
    except Exception as exc:  # noqa: BLE001 - any failure at all means "not ready"
        log.warning("health.not_ready", check="database", error=type(exc).__name__)
        return JSONResponse(
            {"status": "fail", "checks": {"database": "fail"}}, status_code=503
        )
    return JSONResponse({"status": "pass", "checks": {"database": "pass"}})
