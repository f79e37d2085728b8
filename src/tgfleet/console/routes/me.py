"""The viewer's own page: change the password, create and revoke API tokens, see and end
console sessions. Each action is the API twin's service (``/api/v1/auth/password``,
``/api/v1/auth/tokens``) with its rules and audit record. A new token's secret is in the
answer to the POST that made it only (``Cache-Control: no-store``).

A password change ends every JWT and console session of the user, this one included (the
domain moves the user's token epoch): the page then sends the browser to the sign-in form
with a notice, as any ended session would be."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import audit_context
from tgfleet.auth.exceptions import (
    ConsoleSessionNotFound,
    InvalidScope,
    PermissionDenied,
    TokenExists,
    TokenNotFound,
    WeakPassword,
)
from tgfleet.components import AppComponents
from tgfleet.console import views_users
from tgfleet.console.guard import Viewer, ViewerOf
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page
from tgfleet.console.routes.users import NO_STORE, redirect_with_notice
from tgfleet.console.views_users import FormErrors
from tgfleet.console.web import SESSION_COOKIE
from tgfleet.kit.http import DbSession, Meta

router = APIRouter(include_in_schema=False)

MAX_PASSWORD = 2048
MAX_NAME = 1000


def _signed_out(text: str) -> RedirectResponse:
    """This browser's session ended: to the sign-in form (coming back here), with a notice."""
    response = redirect_with_notice("/login?next=%2Fme", text, "warn")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _parse_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def _me_page(
    request: Request,
    viewer: Viewer,
    components: AppComponents,
    session: AsyncSession,
    *,
    password_errors: FormErrors | None = None,
    token_errors: FormErrors | None = None,
    created: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    data = await views_users.me_page(session, components.auth, viewer)
    response = page(
        request,
        "me.html",
        viewer,
        {
            "data": data,
            "password_errors": password_errors or FormErrors(),
            "token_errors": token_errors or FormErrors(),
            "created": created,
            "default_expiry": views_users.DEFAULT_EXPIRY,
        },
        name="me",
        status_code=status_code,
    )
    if created is not None:
        response.headers.update(NO_STORE)
    return response


@router.get("/me")
async def me(
    request: Request, viewer: ViewerOf, components: AppComponents, session: DbSession
) -> Response:
    """The viewer's own account: password, API tokens, console sessions."""
    return await _me_page(request, viewer, components, session)


@router.post("/me/password")
async def change_password(
    request: Request,
    viewer: ViewerOf,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    current: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
    new: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
    repeat: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
) -> Response:
    """Change the own password: the API's ``POST /auth/password`` service and rules."""
    errors = FormErrors()
    if not current:
        errors.fields["current"] = _("Enter your current password.")
    if not new:
        errors.fields["new"] = _("Enter the new password.")
    elif new != repeat:
        errors.fields["repeat"] = _("The two new passwords differ; type the same one twice.")
    if not errors:
        try:
            await auth_service.change_own_password(
                session,
                components.auth,
                audit_context(viewer.principal, meta),
                viewer.principal,
                current=current,
                new=new,
            )
        except PermissionDenied:
            errors.fields["current"] = _("The current password is wrong.")
        except WeakPassword as exc:
            errors.fields["new"] = exc.message
    if errors:
        await session.rollback()
        return await _me_page(
            request, viewer, components, session, password_errors=errors, status_code=400
        )
    return _signed_out(
        _(
            "Password changed. Every session and access token you had ended, this one too: "
            "sign in with the new password."
        )
    )


@router.post("/me/tokens")
async def create_token(
    request: Request,
    viewer: ViewerOf,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    scopes: Annotated[list[str] | None, Form(max_length=views_users.MAX_CODES)] = None,
    expires: Annotated[str, Form(max_length=16)] = views_users.DEFAULT_EXPIRY,
    expires_on: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """A named API token: the API's ``POST /auth/tokens`` service; its secret is shown in
    this answer only."""
    body, errors = views_users.token_form(viewer, name, scopes or [], expires, expires_on)
    if body is not None:
        try:
            row, secret = await auth_service.create_api_token(
                session,
                audit_context(viewer.principal, meta),
                viewer.principal,
                name=body.name,
                expires_at=body.expires_at,
                scopes=body.scopes,
            )
        except TokenExists as exc:
            errors.fields["name"] = exc.message
        except InvalidScope as exc:
            errors.fields["scopes"] = exc.message
        else:
            created = {"name": row.name, "value": secret}
            return await _me_page(request, viewer, components, session, created=created)
    await session.rollback()
    return await _me_page(
        request, viewer, components, session, token_errors=errors, status_code=400
    )


@router.post("/me/tokens/{token_id}/revoke")
async def revoke_token(token_id: str, viewer: ViewerOf, session: DbSession, meta: Meta) -> Response:
    """Revoke an own API token: the API's ``DELETE /auth/tokens/{id}`` service."""
    parsed = _parse_id(token_id)
    if parsed is None:
        raise TokenNotFound(f"you have no token with id {token_id[:40]!r}")
    await auth_service.revoke_api_token(
        session, audit_context(viewer.principal, meta), viewer.principal, parsed
    )
    return redirect_with_notice("/me#tokens", _("Token revoked: it no longer works."))


@router.post("/me/sessions/{session_id}/revoke")
async def revoke_session(
    session_id: str, viewer: ViewerOf, session: DbSession, meta: Meta
) -> Response:
    """End one of the viewer's own console sessions (this one signs this browser out)."""
    parsed = _parse_id(session_id)
    if parsed is None or viewer.principal.user_id is None:
        raise ConsoleSessionNotFound(f"you have no console session with id {session_id[:40]!r}")
    await auth_service.revoke_console_session(
        session, viewer.principal.user_id, parsed, audit_context(viewer.principal, meta)
    )
    if parsed == viewer.session.id:
        return _signed_out(_("This session ended. Sign in again to continue."))
    return redirect_with_notice(
        "/me#sessions", _("Session ended: that browser has to sign in again.")
    )
