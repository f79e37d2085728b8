"""The vault page: the keyring and the secrets by state (``GET /api/v1/vault/status``,
``vault:read``), the tampered secrets with the way back; a rotation started from the page
(``POST /api/v1/vault/rotate``'s service, ``vault:rotate``) and its progress over
Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import views_vault
from tgfleet.console.guard import VaultReader, VaultRotator
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page
from tgfleet.console.rotation import runner_of
from tgfleet.console.stream import RETRY_MS
from tgfleet.console.templating import render
from tgfleet.console.web import set_flash
from tgfleet.kit.http import DbSession, Meta, reads_only

router = APIRouter(include_in_schema=False)

#: The progress stream's events: the progress block's HTML, then ``done`` (the page's
#: ``sse-close``) once the rotation has ended.
PROGRESS_EVENT = "rotation"
DONE_EVENT = "done"
EVENTS_URL = "/vault/rotation/events"


@router.get("/vault")
async def vault(
    request: Request, viewer: VaultReader, components: AppComponents, session: DbSession
) -> Response:
    """The keyring, the secrets by state, the tampered ones, the last rotation, and this
    process's rotation (its progress live while it runs)."""
    data = await views_vault.vault_page(session, components.vault)
    rotation = runner_of(request.app).progress
    return page(
        request,
        "vault.html",
        viewer,
        {"data": data, "rotation": rotation, "events_url": EVENTS_URL},
        name="vault",
    )


@router.post("/vault/rotate")
@reads_only  # the rotation commits batch by batch in units of work of its own
async def rotate(
    request: Request, viewer: VaultRotator, components: AppComponents, meta: Meta
) -> Response:
    """Start the API's rotation in this process and go back to the page, which follows
    its progress; while one runs here, a second click starts nothing."""
    started = runner_of(request.app).start(
        components.sessionmaker, components.vault, audit_context(viewer.principal, meta)
    )
    response = RedirectResponse("/vault#rotation", status_code=303)
    if started:
        set_flash(response, _("Rotation started: the page follows its progress."))
    else:
        set_flash(response, _("A rotation is already running: the page shows it."), "bad")
    return response


@router.get(EVENTS_URL)
async def rotation_events(request: Request, _viewer: VaultReader) -> EventSourceResponse:
    """The rotation's progress block, redrawn at each batch, until the rotation ends."""
    runner = runner_of(request.app)

    async def messages() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(comment="rotation", retry=RETRY_MS)
        async for progress in runner.updates():
            html = render("vault.html", {"rotation": progress}, block="progress")
            yield ServerSentEvent(data=html, event=PROGRESS_EVENT)
        yield ServerSentEvent(data="", event=DONE_EVENT)

    return EventSourceResponse(messages(), headers={"Cache-Control": "no-store"})
