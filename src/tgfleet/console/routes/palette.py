"""The command palette: Ctrl/Cmd-K opens it on every page (``base.html``'s dialog asks for
the results block as one types); ``/palette`` is the same search as a page, for a browser
without JavaScript."""

from __future__ import annotations

from functools import cache
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tgfleet.console import navigation, views_palette
from tgfleet.console.assets import docs_router
from tgfleet.console.guard import ViewerOf
from tgfleet.console.pages import page, wants_block
from tgfleet.kit.http import DbSession

router = APIRouter(include_in_schema=False)


@cache
def _mounted() -> frozenset[str]:
    # Read when first asked: ROUTERS includes this module's router.
    from tgfleet.console.routes import ROUTERS

    return navigation.mounted(route for r in (*ROUTERS, docs_router) for route in r.routes)


@router.get("/palette")
async def palette(
    request: Request,
    viewer: ViewerOf,
    session: DbSession,
    q: Annotated[str, Query(max_length=views_palette.MAX_QUERY)] = "",
) -> Response:
    mounted = _mounted()
    results = await views_palette.search(session, viewer, q, mounted)
    block = "palette_results" if wants_block(request, "palette-results") else None
    return page(request, "palette.html", viewer, {"results": results}, name="palette", block=block)
