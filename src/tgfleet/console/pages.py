"""Rendering a console page: the viewer, the pending notice and the live stream's address
join every page's own context."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from tgfleet.console.guard import Viewer
from tgfleet.console.templating import templates
from tgfleet.console.web import FLASH_COOKIE, read_flash


def page(
    request: Request,
    template: str,
    viewer: Viewer,
    context: dict[str, Any],
    *,
    name: str,
    live_url: str | None = None,
    status_code: int = 200,
    block: str | None = None,
) -> Response:
    """``template`` for ``viewer``; ``block`` renders one block of it (an htmx swap)."""
    flash = read_flash(request)
    full = {
        **viewer.template_context(),
        "page": name,
        "flash": flash,
        "live_url": live_url,
        **context,
    }
    if block is not None:
        response = templates.TemplateResponse(
            request, template, full, status_code=status_code, block_name=block
        )
    else:
        response = templates.TemplateResponse(request, template, full, status_code=status_code)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def wants_block(request: Request, target: str) -> bool:
    """An htmx request that will swap the element ``target`` only."""
    return (
        request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == target
    )
