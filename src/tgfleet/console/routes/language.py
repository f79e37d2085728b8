"""The language switch: this browser's choice (a cookie, so the sign-in page speaks it
too) and, when a signed-in user sends their session's CSRF token, the user's saved choice
(``user.language``, audited ``user.language``), which follows them to any browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRouter

from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import i18n
from tgfleet.console.errors import html_error
from tgfleet.console.exceptions import SignInRequired
from tgfleet.console.guard import signed_in
from tgfleet.console.web import LANGUAGE_COOKIE, local_target, origin_allowed, secure_cookies
from tgfleet.kit.http import DbSession, Meta

router = APIRouter(include_in_schema=False)

#: A year: a language choice is not a secret and rarely changes.
COOKIE_SECONDS = 365 * 24 * 3600
#: The choice that follows the browser's ``Accept-Language`` again.
BROWSER = "auto"


@router.post("/language")
async def choose(
    request: Request,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    language: Annotated[str, Form(max_length=16)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",  # noqa: A002 - the form field's name
) -> Response:
    """Switch the console's language; ``auto`` follows the browser again."""
    if language != BROWSER and language not in i18n.BY_CODE:
        return html_error(
            request, 400, i18n.gettext("Choose one of the languages the console offers.")
        )
    if not origin_allowed(request):
        return html_error(
            request, 403, i18n.gettext("A language switch from another site was refused.")
        )
    chosen = None if language == BROWSER else language
    try:
        viewer = await signed_in(request, components, session)
    except SignInRequired:
        viewer = None
    user_id = viewer.principal.user_id if viewer is not None else None
    trusted = viewer is not None and auth_service.verify_csrf(viewer.session, csrf_token or None)
    if viewer is not None and user_id is not None and trusted:
        await auth_service.set_language(
            session, audit_context(viewer.principal, meta), user_id, chosen
        )
    response = RedirectResponse(local_target(next), status_code=303)
    if chosen is None:
        response.delete_cookie(LANGUAGE_COOKIE, path="/")
    else:
        response.set_cookie(
            LANGUAGE_COOKIE,
            chosen,
            max_age=COOKIE_SECONDS,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(request, components.settings.console_secure_cookies),
            path="/",
        )
    return response
