"""Route guards. Every route declares what it needs through ``Requires``:

    @router.get("/users", dependencies=[Requires(Permission.USER_READ)])
    async def list_users(principal: Annotated[Principal, Requires(Permission.USER_READ)]): ...

``Requires(None)`` means any authenticated principal. The RBAC test walks every route and
fails when one declares neither (only login, health and metrics are open).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import AccessDenied
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.exceptions import Unauthorized
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.http import DbSession, Meta, RequestMeta

bearer_scheme = HTTPBearer(
    auto_error=False, description="a JWT from /api/v1/auth/login or an API token"
)


async def get_security(components: AppComponents) -> auth_service.Security:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
    # request for an attribute read.
    return components.auth


SecurityDep = Annotated[auth_service.Security, Depends(get_security)]


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


async def current_principal(
    session: DbSession, security: SecurityDep, credentials: Credentials
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        auth_service.count_denied("missing_credentials")
        raise Unauthorized
    return await auth_service.authenticate(session, security, credentials.credentials)


class PermissionGuard:
    """Checks one permission (or just authentication); its subclasses are the dependencies
    (``Requires``)."""

    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission

    async def check(
        self, principal: Principal, session: AsyncSession, meta: RequestMeta, request: Request
    ) -> Principal:
        if self.permission is not None and self.permission not in principal.permissions:
            route = request.scope.get("route")
            target = f"{request.method} {getattr(route, 'path', request.url.path)}"
            await audit_service.record(
                session,
                audit_context(principal, meta),
                action="auth.denied",
                target=target,
                result=audit_service.DENIED,
                details={"permission": self.permission.value, "role": principal.role},
            )
            auth_service.count_denied("forbidden")
            msg = f"this needs the permission {self.permission.value}"
            raise AccessDenied(msg)
        return principal

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.permission})"


class RequestGuard(PermissionGuard):
    """Checks in the request's unit of work (``DbSession``)."""

    async def __call__(
        self,
        principal: Annotated[Principal, Depends(current_principal)],
        session: DbSession,
        meta: Meta,
        request: Request,
    ) -> Principal:
        return await self.check(principal, session, meta, request)


class StandaloneGuard(PermissionGuard):
    """For a route whose work commits in units of work of its own (an import, a rotation):
    checks in a short transaction that ends before the route runs, so the request holds no
    transaction (on SQLite no write lock, no snapshot) while the work waits for the lock."""

    async def __call__(
        self,
        request: Request,
        components: AppComponents,
        security: SecurityDep,
        credentials: Credentials,
        meta: Meta,
    ) -> Principal:
        async with unit_of_work(components.sessionmaker, deferred=True) as session:
            principal = await current_principal(session, security, credentials)
            return await self.check(principal, session, meta, request)


def Requires(permission: Permission | None, *, own_transaction: bool = False) -> Any:  # noqa: N802 - reads like a type
    """The guard of a route; ``own_transaction`` for routes that take no ``DbSession`` and
    run their own units of work (``StandaloneGuard``)."""
    guard = StandaloneGuard(permission) if own_transaction else RequestGuard(permission)
    return Depends(guard)


Authenticated = Annotated[Principal, Requires(None)]


def audit_context(principal: Principal, meta: Meta) -> AuditContext:
    return AuditContext(actor=principal.actor, ip=meta.ip, request_id=meta.request_id)
