"""The fleet overview (``/``): counts by state, the online ratio, workers, firing alerts and
the latest events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tgfleet.components import AppComponents
from tgfleet.console import views
from tgfleet.console.guard import AccountReader
from tgfleet.console.pages import page
from tgfleet.console.routes.live import live_url
from tgfleet.kit.http import DbSession

router = APIRouter(include_in_schema=False)


@router.get("/")
async def overview(
    request: Request,
    viewer: AccountReader,
    components: AppComponents,
    session: DbSession,
) -> Response:
    live = live_url(components, "overview")
    data = await views.overview(session)
    return page(request, "overview.html", viewer, {"data": data}, name="overview", live_url=live)
