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

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import AccessDenied
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.exceptions import Unauthorized
from tgfleet.kit.http import DbSession, Meta

bearer_scheme = HTTPBearer(
    auto_error=False, description="a JWT from /api/v1/auth/login or an API token"
)


def get_security(request: Request) -> auth_service.Security:
    security: auth_service.Security = request.app.state.security
    return security


SecurityDep = Annotated[auth_service.Security, Depends(get_security)]


async def current_principal(
    session: DbSession,
    security: SecurityDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        auth_service.count_denied("missing_credentials")
        raise Unauthorized
    return await auth_service.authenticate(session, security, credentials.credentials)


class PermissionGuard:
    """Callable dependency that checks one permission (or just authentication)."""

    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission

    async def __call__(
        self,
        principal: Annotated[Principal, Depends(current_principal)],
        session: DbSession,
        meta: Meta,
        request: Request,
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
        return f"PermissionGuard({self.permission})"


def Requires(permission: Permission | None) -> Any:  # noqa: N802 - reads like a type
    return Depends(PermissionGuard(permission))


Authenticated = Annotated[Principal, Requires(None)]


def audit_context(principal: Principal, meta: Meta) -> AuditContext:
    return AuditContext(actor=principal.actor, ip=meta.ip, request_id=meta.request_id)
