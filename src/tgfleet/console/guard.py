"""The check every console page and action passes: a cookie session, CSRF for anything
that changes state, and the same permission codes as the API (a hidden button is never the
only guard; a refusal is audited exactly as the API's is)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import PermissionGuard, audit_context
from tgfleet.auth.exceptions import InvalidToken
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.console import i18n
from tgfleet.console.exceptions import CsrfRefused, SignInRequired
from tgfleet.console.i18n import gettext as _
from tgfleet.console.web import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    origin_allowed,
)
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.http import DbSession, Meta, RequestMeta


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a console page: their principal, their session's CSRF token (every
    form carries it) and what they may do (the templates show only permitted controls)."""

    principal: Principal
    csrf_token: str
    session: auth_service.ConsoleSession

    @property
    def username(self) -> str:
        return self.principal.username

    def can(self, code: str) -> bool:
        return Permission(code) in self.principal.permissions

    def template_context(self) -> dict[str, Any]:
        return {"viewer": self, "csrf_token": self.csrf_token}


async def presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


class ConsoleGuard(PermissionGuard):
    """A console route's guard (``ConsoleRequires``)."""

    async def __call__(
        self, request: Request, components: AppComponents, session: DbSession, meta: Meta
    ) -> Viewer:
        viewer = await signed_in(request, components, session)
        presented = None
        if request.method not in SAFE_METHODS:
            presented = await presented_csrf(request)
        await self.authorize(request, session, meta, viewer, presented)
        return viewer

    async def authorize(
        self,
        request: Request,
        session: AsyncSession,
        meta: RequestMeta,
        viewer: Viewer,
        presented: str | None,
    ) -> None:
        """CSRF (``presented``: the token the request carried) for anything that changes
        state, then the permission; each refusal audited."""
        if request.method not in SAFE_METHODS:
            await _check_csrf(request, session, meta, viewer, presented)
        await self.check(viewer.principal, session, meta, request)


async def signed_in(request: Request, components: AppComponents, session: AsyncSession) -> Viewer:
    """The viewer of the request's console session cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        msg = _("Sign in to use the console.")
        raise SignInRequired(msg)
    try:
        console = await auth_service.console_session(session, components.auth, token)
    except InvalidToken as exc:
        msg = _("Your console session ended; sign in again.")
        raise SignInRequired(msg) from exc
    if console.language is not None:
        i18n.use_locale(i18n.negotiate(None, console.language))
    return Viewer(principal=console.principal, csrf_token=console.csrf_token, session=console)


async def _check_csrf(
    request: Request,
    session: AsyncSession,
    meta: RequestMeta,
    viewer: Viewer,
    presented: str | None,
) -> None:
    reason = None
    if not origin_allowed(request):
        reason = "cross_origin"
    elif not auth_service.verify_csrf(viewer.session, presented):
        reason = "csrf_token"
    if reason is None:
        return
    route = request.scope.get("route")
    await audit_service.record(
        session,
        audit_context(viewer.principal, meta),
        action="auth.denied",
        target=f"{request.method} {getattr(route, 'path', request.url.path)}",
        result=audit_service.DENIED,
        details={"reason": reason, "via": "console"},
    )
    auth_service.count_denied("csrf")
    msg = (
        _("This request came from another site and was refused.")
        if reason == "cross_origin"
        else _(
            "This form has expired or did not come from this console; reload the page and "
            "try again."
        )
    )
    raise CsrfRefused(msg)


class StandaloneConsoleGuard(ConsoleGuard):
    """``ConsoleGuard`` for a route whose work opens its own units of work (as the API's
    ``StandaloneGuard``): a playbook compiles for seconds, a dry run may wait for the model,
    and neither should hold a transaction (on SQLite: the write lock) meanwhile. The form is
    read first, then the session, the CSRF token and the permission are checked in one short
    transaction (a refusal's audit record is committed with it)."""

    async def __call__(  # type: ignore[override]  # no request unit of work: see above
        self, request: Request, components: AppComponents, meta: Meta
    ) -> Viewer:
        presented = None
        if request.method not in SAFE_METHODS:
            presented = await presented_csrf(request)
        async with unit_of_work(components.sessionmaker, deferred=True) as session:
            viewer = await signed_in(request, components, session)
            await self.authorize(request, session, meta, viewer, presented)
        return viewer


def ConsoleRequires(permission: Permission | None) -> Any:  # noqa: N802 - reads like a type
    return Depends(ConsoleGuard(permission))


#: A signed-in viewer, with no further permission (sign out, own settings).
ViewerOf = Annotated[Viewer, ConsoleRequires(None)]
#: May see accounts (``account:read``).
AccountReader = Annotated[Viewer, ConsoleRequires(Permission.ACCOUNT_READ)]
#: May start, stop and restart accounts (``account:control``).
AccountController = Annotated[Viewer, ConsoleRequires(Permission.ACCOUNT_CONTROL)]
#: May change accounts' group settings (``account:write``).
AccountWriter = Annotated[Viewer, ConsoleRequires(Permission.ACCOUNT_WRITE)]
#: May import sessions (``session:import``): the import page (its upload: ``console.uploads``).
SessionImporter = Annotated[Viewer, ConsoleRequires(Permission.SESSION_IMPORT)]
#: May export a decrypted session (``session:export``): the account page's export.
SessionExporter = Annotated[Viewer, ConsoleRequires(Permission.SESSION_EXPORT)]
#: May crypto-erase a session (``session:delete``).
SessionEraser = Annotated[Viewer, ConsoleRequires(Permission.SESSION_DELETE)]
#: May see alerts, silences and the notification log (``alert:read``).
AlertReader = Annotated[Viewer, ConsoleRequires(Permission.ALERT_READ)]
#: May create and expire silences and send test notifications (``alert:write``).
AlertWriter = Annotated[Viewer, ConsoleRequires(Permission.ALERT_WRITE)]
#: May read and verify the audit log (``audit:read``).
AuditReader = Annotated[Viewer, ConsoleRequires(Permission.AUDIT_READ)]
#: May export the audit log (``audit:export``).
AuditExporter = Annotated[Viewer, ConsoleRequires(Permission.AUDIT_EXPORT)]
#: May see users and roles (``user:read``): the users and roles pages.
UserReader = Annotated[Viewer, ConsoleRequires(Permission.USER_READ)]
#: May create and change users and roles (``user:admin``).
UserAdmin = Annotated[Viewer, ConsoleRequires(Permission.USER_ADMIN)]
#: May see playbooks (``playbook:read``): the list, the editor read-only, versions and diffs.
PlaybookReader = Annotated[Viewer, ConsoleRequires(Permission.PLAYBOOK_READ)]
#: May try a playbook on a sample message (``playbook:read``, as the API's dry run).
PlaybookTester = Annotated[Viewer, Depends(StandaloneConsoleGuard(Permission.PLAYBOOK_READ))]
#: May create playbooks and save versions (``playbook:write``); compiles outside a transaction.
PlaybookWriter = Annotated[Viewer, Depends(StandaloneConsoleGuard(Permission.PLAYBOOK_WRITE))]
#: May see the vault's keys and secrets by state (``vault:read``).
VaultReader = Annotated[Viewer, ConsoleRequires(Permission.VAULT_READ)]
#: May rotate the vault's key-encryption key (``vault:rotate``).
VaultRotator = Annotated[Viewer, ConsoleRequires(Permission.VAULT_ROTATE)]
