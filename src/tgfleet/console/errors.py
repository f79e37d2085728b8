"""Errors as a person sees them: an HTML page that says what happened and what to do, for a
browser on a console path (API clients keep the JSON body, ``tgfleet.app``)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from tgfleet.console.exceptions import SignInRequired
from tgfleet.console.i18n import N_, gettext
from tgfleet.console.templating import templates
from tgfleet.kit.context import request_id_var

_PAGES: dict[int, tuple[str, str]] = {
    400: (N_("Bad request"), N_("Check what you entered and try again.")),
    401: (N_("Sign in needed"), N_("Sign in again to continue.")),
    403: (
        N_("Not allowed"),
        N_("Your role does not permit this. Ask an admin for the permission."),
    ),
    404: (
        N_("Not found"),
        N_("The page or the item does not exist (any more). Go back to the overview."),
    ),
    405: (N_("Not allowed here"), N_("This address does not take that kind of request.")),
    409: (N_("Conflict"), N_("Something changed meanwhile. Reload the page and try again.")),
    413: (N_("Too large"), N_("The upload is over the limit. Split it into smaller files.")),
    422: (N_("Invalid input"), N_("Check what you entered and try again.")),
    429: (N_("Too many attempts"), N_("Wait a moment, then try again.")),
    503: (
        N_("Unavailable"),
        N_("The database cannot be reached right now; nothing was changed. Retry shortly."),
    ),
}
_DEFAULT = (
    N_("Something went wrong"),
    N_("Reload the page; if it persists, quote the request id."),
)


def html_error(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    source_title, source_hint = _PAGES.get(status, _DEFAULT)
    title, hint = gettext(source_title), gettext(source_hint)
    if message.strip().rstrip(".").lower() == source_title.lower():
        # Starlette's bare "Not Found" says no more than the title: say what to do instead.
        message, hint = hint, ""
    if request.headers.get("hx-request") == "true":
        # htmx swaps nothing on an error; console.js shows the text as a toast.
        return Response(message, status_code=status, headers=headers, media_type="text/plain")
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "status": status,
            "title": title,
            "message": message,
            "hint": hint,
            "request_id": request_id_var.get(),
        },
        status_code=status,
        headers=headers,
    )


async def sign_in_required(request: Request, exc: Exception) -> Response:
    """A page asked for without a session goes to the sign-in form and comes back after."""
    if not isinstance(exc, SignInRequired):
        raise exc
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": location})
    if request.method in {"GET", "HEAD"}:
        return RedirectResponse(location, status_code=303)
    return html_error(request, 401, exc.message)
