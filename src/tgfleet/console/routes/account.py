"""One account's page: its state, session and counters, the timeline (paged, filtered by
kind), its groups with their reply settings, the replies it sent; and its actions, each the
API twin's service with the same permission and audit record: start/stop/restart, a group's
settings, replacing the session by an upload, exporting it (reason required)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from tgfleet.account import commands as account_commands
from tgfleet.account import groups as account_groups
from tgfleet.account.exceptions import GroupNeedsPlaybook, InvalidGroupSettings
from tgfleet.account.schemas import CHAT_ID_MAX, CHAT_ID_MIN, ControlAction
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import domain_texts, views_account, views_import
from tgfleet.console.guard import (
    AccountController,
    AccountReader,
    AccountWriter,
    SessionEraser,
    SessionExporter,
)
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page, wants_block
from tgfleet.console.routes.live import live_url
from tgfleet.console.uploads import SessionUploader, received
from tgfleet.console.web import redirect_with_flash
from tgfleet.exceptions import AppError, NotFound
from tgfleet.kit.http import DbSession, Meta
from tgfleet.playbook.exceptions import PlaybookNotFound, PlaybookVersionNotFound
from tgfleet.vault import service as vault_service
from tgfleet.vault.exceptions import SessionNotFound
from tgfleet.vault.schemas import SessionExportRequest

router = APIRouter(include_in_schema=False)

Cursor = Annotated[str | None, Query(max_length=500)]
#: The form field of a session string pasted instead of a file.
PASTED_FIELD = "string"


def _back(account_id: uuid.UUID, anchor: str = "") -> str:
    return f"/accounts/{account_id}" + (f"#{anchor}" if anchor else "")


@router.get("/accounts/{account_id}")
async def account(
    request: Request,
    account_id: str,
    viewer: AccountReader,
    components: AppComponents,
    session: DbSession,
    kind: Annotated[str, Query(max_length=32)] = "",
    cursor: Cursor = None,
    groups_cursor: Cursor = None,
) -> Response:
    parsed = views_account.parse_id(account_id)
    if wants_block(request, "timeline"):
        timeline = await views_account.timeline(
            session, parsed, kind=kind.strip(), cursor=cursor or None
        )
        return page(
            request,
            "account.html",
            viewer,
            {"timeline": timeline},
            name="accounts",
            block="timeline",
        )
    live = live_url(components, "account", id=str(parsed))
    data = await views_account.account_page(
        session,
        parsed,
        kind=kind.strip(),
        cursor=cursor or None,
        groups_cursor=groups_cursor or None,
    )
    return page(
        request,
        "account.html",
        viewer,
        {"data": data, "timeline": data.timeline},
        name="accounts",
        live_url=live,
    )


@router.post("/accounts/{account_id}/control")
async def control(
    account_id: str,
    action: Annotated[ControlAction, Form()],
    viewer: AccountController,
    session: DbSession,
    meta: Meta,
) -> Response:
    """Start, stop or restart: the API's ``POST /accounts/{id}/{action}`` service."""
    account = await account_commands.control(
        session,
        audit_context(viewer.principal, meta),
        views_account.parse_id(account_id),
        action,
    )
    return redirect_with_flash(
        _back(account.id),
        _("%(action)s: asked; the account is now wanted %(state)s.")
        % {
            "action": domain_texts.control_action(action),
            "state": domain_texts.desired_state(account.desired_state),
        },
    )


@router.post("/accounts/{account_id}/groups/{chat_id}")
async def set_group(
    account_id: str,
    chat_id: int,
    viewer: AccountWriter,
    session: DbSession,
    meta: Meta,
    enabled: Annotated[bool, Form()] = False,
    playbook: Annotated[str, Form(max_length=36)] = "",
    version: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """A group's reply settings: the API's ``PUT /accounts/{id}/groups/{chat_id}`` service
    (the title kept). A setting the service refuses comes back as a notice, nothing
    written."""
    parsed = views_account.parse_id(account_id)
    back = _back(parsed, "groups")
    try:
        playbook_id = uuid.UUID(playbook) if playbook.strip() else None
        pinned = int(version) if version.strip() else None
    except ValueError:
        return redirect_with_flash(
            back, _("Choose a playbook from the list and a version number."), "bad"
        )
    if not CHAT_ID_MIN <= chat_id <= CHAT_ID_MAX:
        return redirect_with_flash(
            back, _("chat id %(chat)s is not a Telegram chat id.") % {"chat": chat_id}, "bad"
        )
    try:
        group = await account_groups.set_group(
            session,
            audit_context(viewer.principal, meta),
            parsed,
            chat_id,
            enabled=enabled,
            playbook_id=playbook_id,
            playbook_version=pinned,
            title=None,
        )
    except (
        GroupNeedsPlaybook,
        InvalidGroupSettings,
        PlaybookNotFound,
        PlaybookVersionNotFound,
    ) as exc:
        text = _("Group %(chat)s not changed: %(why)s.") % {"chat": chat_id, "why": exc.message}
        return redirect_with_flash(back, text, "bad")
    name = group.title or str(chat_id)
    if group.enabled:
        return redirect_with_flash(back, _("Group %(name)s: replies on.") % {"name": name})
    return redirect_with_flash(back, _("Group %(name)s: replies off.") % {"name": name})


@router.post("/accounts/{account_id}/session")
async def replace_session(
    request: Request,
    account_id: str,
    viewer: SessionUploader,
    components: AppComponents,
    meta: Meta,
) -> Response:
    """Replace the session by an uploaded file or a pasted string: the API's ``PUT
    /accounts/{id}/session`` service (its refusals audited and named by the same codes)."""
    parsed = views_account.parse_id(account_id)
    upload = received(request)
    context = audit_context(viewer.principal, meta)
    if upload.error is not None:
        await vault_service.audit_refused(
            components.sessionmaker, context, vault_service.DEFAULT_UPLOAD_NAME, upload.error
        )
        return _refused(parsed, upload.error)
    files = upload.files + views_import.strings_as_files(upload.fields.get(PASTED_FIELD, ""))
    try:
        result = await vault_service.replace_upload(
            components.sessionmaker,
            components.vault,
            context,
            parsed,
            files,
            name=files[0].name if len(files) == 1 else vault_service.DEFAULT_UPLOAD_NAME,
        )
    except NotFound:
        raise
    except AppError as exc:
        return _refused(parsed, exc)
    values = {"version": result.version, "format": result.source_format}
    if result.same_key:
        text = _(
            "Session replaced: version %(version)s, %(format)s (the same session as before); "
            "the worker starts the account afresh."
        )
    else:
        text = _(
            "Session replaced: version %(version)s, %(format)s; the worker starts the account "
            "afresh."
        )
    return redirect_with_flash(_back(parsed), text % values)


def _refused(account_id: uuid.UUID, error: AppError) -> Response:
    return redirect_with_flash(
        _back(account_id, "session"),
        _("Session not replaced (%(code)s): %(why)s") % {"code": error.code, "why": error.message},
        "bad",
    )


@router.post("/accounts/{account_id}/session/erase")
async def erase_session(
    account_id: str,
    viewer: SessionEraser,
    session: DbSession,
    meta: Meta,
    confirm: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """Crypto-erase the session: the API's ``DELETE /accounts/{id}/session`` service (the
    same audit record). The form asks for the account's label, typed: nothing undoes it."""
    parsed = views_account.parse_id(account_id)
    account = await views_account.account_label(session, parsed)
    if confirm.strip() != account:
        text = _("Nothing erased: type the account's label, %(label)s, to confirm.")
        return redirect_with_flash(_back(parsed, "session"), text % {"label": account}, "bad")
    try:
        await vault_service.erase(session, audit_context(viewer.principal, meta), parsed)
    except SessionNotFound:
        return redirect_with_flash(
            _back(parsed, "session"), _("This account has no session to erase."), "warn"
        )
    return redirect_with_flash(
        _back(parsed, "session"),
        _(
            "Session erased: its key and ciphertext are destroyed and nothing can decrypt it; "
            "the account cannot run until a session is imported again."
        ),
    )


@router.post("/accounts/{account_id}/session/export")
async def export_session(
    account_id: str,
    viewer: SessionExporter,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    format: Annotated[str, Form(max_length=32)] = "",  # noqa: A002 - the API's field name
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """The decrypted session as a download: the API's export service (audited with the
    reason), the same file and headers. The API's rules for the format and the reason."""
    parsed = views_account.parse_id(account_id)
    try:
        wanted = SessionExportRequest.model_validate({"format": format, "reason": reason.strip()})
    except ValidationError:
        return redirect_with_flash(
            _back(parsed, "session"),
            _(
                "Export refused: choose a format and give the reason (3 to 500 characters); "
                "it is recorded in the audit log."
            ),
            "bad",
        )
    content = await vault_service.export(
        session,
        components.vault,
        audit_context(viewer.principal, meta),
        parsed,
        fmt=wanted.format,
        reason=wanted.reason,
    )
    download = vault_service.export_download(parsed, wanted.format)
    return Response(content=content, media_type=download.media_type, headers=download.headers)
