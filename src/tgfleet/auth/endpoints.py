"""HTTP API for login, the caller's own tokens, users and roles."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import Authenticated, Requires, SecurityDep, audit_context
from tgfleet.auth.permissions import PERMISSION_DESCRIPTIONS, Permission
from tgfleet.auth.schemas import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenRead,
    LoginRequest,
    MeRead,
    PasswordChange,
    PasswordReset,
    PasswordResetResult,
    PermissionRead,
    Principal,
    RoleCreate,
    RoleRead,
    RoleUpdate,
    TokenResponse,
    UserCreate,
    UserCreated,
    UserRead,
    UserRoleChange,
)
from tgfleet.kit.http import DbSession, Meta, RequestMeta
from tgfleet.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from tgfleet.models import Role, User

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
user_router = APIRouter(prefix="/api/v1/users", tags=["users"])
role_router = APIRouter(prefix="/api/v1", tags=["roles"])

UserAdmin = Annotated[Principal, Requires(Permission.USER_ADMIN)]
UserReader = Annotated[Principal, Requires(Permission.USER_READ)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id,
        username=user.username,
        role=user.role.name,
        disabled=user.disabled,
        created_at=user.created_at,
        updated_at=user.updated_at,
        last_login_at=user.last_login_at,
    )


def _role_read(role: Role) -> RoleRead:
    return RoleRead(
        name=role.name,
        description=role.description,
        builtin=role.builtin,
        permissions=sorted(auth_service.role_permissions(role)),
    )


# ----------------------------------------------------------------------------- auth


@auth_router.post("/login", response_model=TokenResponse)
async def login(
    body: LoginRequest, session: DbSession, security: SecurityDep, meta: Meta
) -> TokenResponse:
    """Exchange a username and password for a short-lived bearer JWT.

    Failed attempts are throttled per username and per client address with growing
    delays (429 with Retry-After). Every attempt is audited.
    """
    issued = await auth_service.login(
        session,
        security,
        username=body.username,
        password=body.password.get_secret_value(),
        ip=meta.ip,
        request_id=meta.request_id,
    )
    return TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)


@auth_router.get("/me", response_model=MeRead)
async def me(principal: Authenticated) -> MeRead:
    """Who the bearer credential belongs to, and what it may do."""
    return MeRead(
        id=principal.user_id,
        username=principal.username,
        role=principal.role,
        permissions=sorted(principal.permissions),
        via=principal.via,
        token_name=principal.token_name,
    )


@auth_router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange,
    principal: Authenticated,
    session: DbSession,
    security: SecurityDep,
    meta: Meta,
) -> Response:
    """Change your own password. Access tokens issued before the change stop working."""
    await auth_service.change_own_password(
        session,
        security,
        audit_context(principal, meta),
        principal,
        current=body.current_password.get_secret_value(),
        new=body.new_password.get_secret_value(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@auth_router.post("/tokens", response_model=ApiTokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(
    body: ApiTokenCreate, principal: Authenticated, session: DbSession, meta: Meta
) -> ApiTokenCreated:
    """Create a named API token for yourself. The secret is in this response only."""
    row, secret = await auth_service.create_api_token(
        session,
        audit_context(principal, meta),
        principal,
        name=body.name,
        expires_at=body.expires_at,
        scopes=body.scopes,
    )
    return ApiTokenCreated(**ApiTokenRead.model_validate(row).model_dump(), token=secret)


@auth_router.get("/tokens", response_model=list[ApiTokenRead])
async def list_tokens(principal: Authenticated, session: DbSession) -> list[ApiTokenRead]:
    """Your API tokens (never their secrets)."""
    rows = await auth_service.list_api_tokens(session, principal)
    return [ApiTokenRead.model_validate(row) for row in rows]


@auth_router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(
    token_id: uuid.UUID, principal: Authenticated, session: DbSession, meta: Meta
) -> Response:
    """Revoke one of your API tokens; it stops working with the next request."""
    await auth_service.revoke_api_token(
        session, audit_context(principal, meta), principal, token_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ---------------------------------------------------------------------------- users


@user_router.post("", response_model=UserCreated, status_code=status.HTTP_201_CREATED)
async def create_user(
    body: UserCreate, principal: UserAdmin, session: DbSession, security: SecurityDep, meta: Meta
) -> UserCreated:
    """Create a user. Without a password one is generated and returned in this response only."""
    user, generated = await auth_service.create_user(
        session,
        security,
        audit_context(principal, meta),
        username=body.username,
        role=body.role,
        password=body.password.get_secret_value() if body.password else None,
    )
    return UserCreated(**_user_read(user).model_dump(), generated_password=generated)


@user_router.get("", response_model=Page[UserRead])
async def list_users(
    _principal: UserReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    q: Annotated[str | None, Query(max_length=64, description="part of the username")] = None,
) -> Page[UserRead]:
    """Users in username order, a page at a time."""
    result = await auth_service.list_users(session, cursor=cursor, limit=limit, q=q)
    return Page[UserRead](
        items=[_user_read(user) for user in result.items], next_cursor=result.next_cursor
    )


@user_router.get("/{username}", response_model=UserRead)
async def get_user(username: str, _principal: UserReader, session: DbSession) -> UserRead:
    """One user."""
    return _user_read(await auth_service.get_user(session, username))


@user_router.post("/{username}/disable", response_model=UserRead)
async def disable_user(
    username: str, principal: UserAdmin, session: DbSession, meta: Meta
) -> UserRead:
    """Disable a user: their tokens stop working at once. The last admin cannot be disabled."""
    return await _set_disabled(session, principal, meta, username, disabled=True)


@user_router.post("/{username}/enable", response_model=UserRead)
async def enable_user(
    username: str, principal: UserAdmin, session: DbSession, meta: Meta
) -> UserRead:
    """Enable a disabled user."""
    return await _set_disabled(session, principal, meta, username, disabled=False)


async def _set_disabled(
    session: AsyncSession, principal: Principal, meta: RequestMeta, username: str, *, disabled: bool
) -> UserRead:
    context = audit_context(principal, meta)
    return _user_read(
        await auth_service.set_user_disabled(session, context, username, disabled=disabled)
    )


@user_router.put("/{username}/role", response_model=UserRead)
async def change_role(
    username: str, body: UserRoleChange, principal: UserAdmin, session: DbSession, meta: Meta
) -> UserRead:
    """Give a user another role. The last admin cannot be demoted."""
    user = await auth_service.change_user_role(
        session, audit_context(principal, meta), username, body.role
    )
    return _user_read(user)


@user_router.post("/{username}/password", response_model=PasswordResetResult)
async def reset_password(
    username: str,
    body: PasswordReset,
    principal: UserAdmin,
    session: DbSession,
    security: SecurityDep,
    meta: Meta,
) -> PasswordResetResult:
    """Set a user's password (generated if absent); their access tokens stop working."""
    generated = await auth_service.reset_password(
        session,
        security,
        audit_context(principal, meta),
        username,
        body.password.get_secret_value() if body.password else None,
    )
    return PasswordResetResult(username=username, generated_password=generated)


# ---------------------------------------------------------------------------- roles


@role_router.get("/permissions", response_model=list[PermissionRead])
async def list_permissions(_principal: UserReader) -> list[PermissionRead]:
    """Every permission code a role can hold."""
    return [
        PermissionRead(code=code, description=PERMISSION_DESCRIPTIONS[code]) for code in Permission
    ]


@role_router.get("/roles", response_model=list[RoleRead])
async def list_roles(_principal: UserReader, session: DbSession) -> list[RoleRead]:
    """Built-in roles (read-only) and custom roles."""
    return [_role_read(role) for role in await auth_service.list_roles(session)]


@role_router.get("/roles/{name}", response_model=RoleRead)
async def get_role(name: str, _principal: UserReader, session: DbSession) -> RoleRead:
    """One role."""
    return _role_read(await auth_service.get_role(session, name))


@role_router.post("/roles", response_model=RoleRead, status_code=status.HTTP_201_CREATED)
async def create_role(
    body: RoleCreate, principal: UserAdmin, session: DbSession, meta: Meta
) -> RoleRead:
    """Create a custom role from permission codes."""
    role = await auth_service.create_role(
        session,
        audit_context(principal, meta),
        name=body.name,
        description=body.description,
        permissions=body.permissions,
    )
    return _role_read(role)


@role_router.patch("/roles/{name}", response_model=RoleRead)
async def update_role(
    name: str, body: RoleUpdate, principal: UserAdmin, session: DbSession, meta: Meta
) -> RoleRead:
    """Change a custom role's description or permissions; built-in roles are read-only."""
    role = await auth_service.update_role(
        session,
        audit_context(principal, meta),
        name,
        description=body.description,
        permissions=body.permissions,
    )
    return _role_read(role)


@role_router.delete("/roles/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_role(name: str, principal: UserAdmin, session: DbSession, meta: Meta) -> Response:
    """Delete a custom role that no user holds."""
    await auth_service.delete_role(session, audit_context(principal, meta), name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
