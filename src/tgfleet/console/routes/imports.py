"""The import page (``/import``): session files, strings and zips, picked or dropped, through
the API import's own service (the same limits, results and audit records), then a table of
every file's result and the way to the new accounts. No destructive action is on this page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import views_import
from tgfleet.console.guard import SessionImporter
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page
from tgfleet.console.uploads import SessionUploader, received
from tgfleet.console.web import set_flash
from tgfleet.kit.http import Meta
from tgfleet.vault import service as vault_service

#: The page's path; its uploads have the API import's body limit (``tgfleet.app``).
IMPORT_PAGE = "/import"

router = APIRouter(include_in_schema=False)


@router.get(IMPORT_PAGE)
async def import_form(
    request: Request, viewer: SessionImporter, components: AppComponents
) -> Response:
    return page(
        request,
        "import.html",
        viewer,
        {"limits": views_import.limits(components.settings), "outcome": None},
        name="import",
    )


@router.post(IMPORT_PAGE)
async def import_sessions(
    request: Request, viewer: SessionUploader, components: AppComponents, meta: Meta
) -> Response:
    """Import what the form posted: its files (``files``, zips expanded) and the strings
    pasted one a line (``strings``), each file its own result and audit record."""
    upload = received(request)
    context = audit_context(viewer.principal, meta)
    if upload.error is not None:
        await vault_service.audit_refused(
            components.sessionmaker, context, vault_service.DEFAULT_UPLOAD_NAME, upload.error
        )
        raise upload.error
    files = upload.files + views_import.strings_as_files(upload.fields.get("strings", ""))
    if not files:
        response = RedirectResponse(IMPORT_PAGE, status_code=303)
        set_flash(response, _("Choose a file or paste a session string first."), "warn")
        return response
    results = await vault_service.import_upload(
        components.sessionmaker,
        components.vault,
        context,
        files,
        name=files[0].name if len(files) == 1 else vault_service.DEFAULT_UPLOAD_NAME,
    )
    outcome = await views_import.outcome(components.sessionmaker, results)
    summary = f"{outcome.imported} imported, {outcome.failed} failed."
    return page(
        request,
        "import.html",
        viewer,
        {
            "limits": views_import.limits(components.settings),
            "outcome": outcome,
            # The result is this page: its toast comes with it, not after a redirect.
            "flash": {"text": summary, "level": "warn" if outcome.failed else "ok"},
        },
        name="import",
    )
