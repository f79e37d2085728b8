"""Signing in and out of the console: a cookie session (``auth.console_sessions``) with the
API login's throttle and audit."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import audit_context
from tgfleet.auth.exceptions import InvalidCredentials, LoginThrottled, UserDisabled
from tgfleet.components import AppComponents
from tgfleet.console.guard import ViewerOf
from tgfleet.console.i18n import gettext as _
from tgfleet.console.templating import templates
from tgfleet.console.web import (
    FLASH_COOKIE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    local_target,
    new_login_csrf,
    origin_allowed,
    read_flash,
    same_token,
    secure_cookies,
)
from tgfleet.kit.http import DbSession, Meta

router = APIRouter(include_in_schema=False)

#: The sign-in form's fields are bounded like the API's login body.
MAX_FIELD = 256


def _login_page(
    request: Request,
    *,
    next_path: str,
    error: str | None = None,
    username: str = "",
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    forced_secure: bool,
) -> Response:
    token = new_login_csrf()
    # A notice from the page that sent the browser here (a password change signed it out).
    flash = read_flash(request)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "csrf_token": token,
            "next": next_path,
            "error": error,
            "username": username,
            "flash": flash,
        },
        status_code=status_code,
        headers=headers,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, forced_secure),
        path="/login",
    )
    return response


@router.get("/login")
async def login_form(request: Request, components: AppComponents, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
    return _login_page(
        request,
        next_path=local_target(next),
        forced_secure=components.settings.console_secure_cookies,
    )


@router.post("/login")
async def login(
    request: Request,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    username: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    password: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    csrf_token: Annotated[str, Form(max_length=MAX_FIELD)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002 - the form field's name
) -> Response:
    settings = components.settings
    target = local_target(next)

    def again(error: str, status_code: int, headers: dict[str, str] | None = None) -> Response:
        return _login_page(
            request,
            next_path=target,
            error=error,
            username=username[:150],
            status_code=status_code,
            headers=headers,
            forced_secure=settings.console_secure_cookies,
        )

    if not origin_allowed(request) or not same_token(
        request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token
    ):
        auth_service.count_denied("csrf")
        return again(_("The sign-in form expired or came from another site; try again."), 403)
    if not username or not password:
        return again(_("Enter your username and password."), 400)
    try:
        opened = await auth_service.open_console_session(
            session,
            components.auth,
            username=username,
            password=password,
            ip=meta.ip,
            user_agent=request.headers.get("user-agent", ""),
            request_id=meta.request_id,
        )
    except LoginThrottled as exc:
        text = _("Too many failed sign-ins; try again in %(seconds)s s.")
        return again(text % {"seconds": exc.retry_after}, 429, exc.headers)
    except InvalidCredentials as exc:
        return again(_("Wrong username or password."), exc.status_code)
    except UserDisabled as exc:
        return again(_("This user is disabled; ask an admin to enable it."), exc.status_code)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=settings.console_session_max_seconds,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request, settings.console_secure_cookies),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request, viewer: ViewerOf, session: DbSession, meta: Meta) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    await auth_service.close_console_session(
        session,
        token,
        audit_context(viewer.principal, meta),
    )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
