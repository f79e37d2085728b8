"""The workers page (``GET /api/v1/workers``'s reading: epoch, capacity, accounts held,
heartbeat age, alive or fenced, the unassigned accounts) and the health page (the ``GET
/health`` document check by check; open in the API, so any signed-in user reads it here).
The health page is ``/health/checks``: ``/health`` itself is the API's document (and
``console.web._CONSOLE_BELOW`` makes this path below it a console page: its CSP)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tgfleet.components import AppComponents
from tgfleet.console import views_workers
from tgfleet.console.guard import AccountReader, ViewerOf
from tgfleet.console.pages import page
from tgfleet.kit.http import DbSession

router = APIRouter(include_in_schema=False)


@router.get("/workers")
async def workers(request: Request, viewer: AccountReader, session: DbSession) -> Response:
    data = await views_workers.workers_page(session)
    return page(request, "workers.html", viewer, {"data": data}, name="workers")


@router.get("/health/checks")
async def health(request: Request, viewer: ViewerOf, components: AppComponents) -> Response:
    data = await views_workers.health_page(components.health)
    return page(request, "health.html", viewer, {"data": data}, name="health")
