"""Users and roles as an admin manages them: each action is the API twin's service (``/api/v1
/users``, ``/api/v1/roles``) with the same permission code and the same audit record. A
refused form comes back with the problem next to its field and nothing written; a generated
password is in the answer to the POST that made it only (``Cache-Control: no-store``), never
in a page a reload or the history brings back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.auth import service as auth_service
from tgfleet.auth.dependencies import audit_context
from tgfleet.auth.exceptions import (
    BuiltinRoleReadOnly,
    InvalidUsername,
    LastAdmin,
    RoleExists,
    RoleInUse,
    RoleNotFound,
    UserExists,
    WeakPassword,
)
from tgfleet.auth.permissions import Permission
from tgfleet.components import AppComponents
from tgfleet.console import views_users
from tgfleet.console.guard import UserAdmin, UserReader, Viewer
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page
from tgfleet.console.views_users import FormErrors
from tgfleet.console.web import set_flash
from tgfleet.kit.http import DbSession, Meta, RequestMeta

router = APIRouter(include_in_schema=False)

#: Form fields are bounded well above the rules' own limits, so an overlong value still
#: gets the rule's sentence (a username's 64 characters) rather than a bare 422.
MAX_NAME = 1000
MAX_PASSWORD = 2048
MAX_DESCRIPTION = 2000
Username = Annotated[str, Path(max_length=MAX_NAME)]
RoleName = Annotated[str, Path(max_length=MAX_NAME)]
Codes = Annotated[list[str] | None, Form(max_length=views_users.MAX_CODES)]
#: A page holding a secret shown once is not kept by the browser or a proxy.
NO_STORE = {"Cache-Control": "no-store"}


def redirect_with_notice(url: str, text: str, level: str = "ok") -> RedirectResponse:
    """303 to ``url``, whose page shows ``text`` once (an action's result)."""
    response = RedirectResponse(url, status_code=303)
    set_flash(response, text, level)
    return response


async def _users_page(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    *,
    cursor: str | None = None,
    q: str = "",
    errors: FormErrors | None = None,
    secret: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    data = await views_users.users_page(session, cursor=cursor, q=q)
    response = page(
        request,
        "users.html",
        viewer,
        {"data": data, "errors": errors or FormErrors(), "secret": secret},
        name="users",
        status_code=status_code,
    )
    if secret is not None:
        response.headers.update(NO_STORE)
    return response


@router.get("/users")
async def users(
    request: Request,
    viewer: UserReader,
    session: DbSession,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    q: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """Users in username order, a page at a time: the API's ``GET /users``."""
    return await _users_page(request, viewer, session, cursor=cursor or None, q=q)


@router.post("/users")
async def create_user(
    request: Request,
    viewer: UserAdmin,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    username: Annotated[str, Form(max_length=MAX_NAME)] = "",
    role: Annotated[str, Form(max_length=MAX_NAME)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
) -> Response:
    """Create a user: the API's ``POST /users`` service; without a password one is generated
    and shown in this answer only."""
    errors = FormErrors(values={"username": username, "role": role})
    try:
        user, generated = await auth_service.create_user(
            session,
            components.auth,
            audit_context(viewer.principal, meta),
            username=username,
            role=role,
            password=password or None,
        )
    except (InvalidUsername, UserExists) as exc:
        errors.fields["username"] = exc.message
    except RoleNotFound as exc:
        errors.fields["role"] = exc.message
    except WeakPassword as exc:
        errors.fields["password"] = exc.message
    if errors:
        await session.rollback()
        return await _users_page(request, viewer, session, errors=errors, status_code=400)
    if generated is None:
        return redirect_with_notice("/users", _("User %(name)s created.") % {"name": user.username})
    secret = {
        "title": _("User %(name)s created") % {"name": user.username},
        "label": _("Their password"),
        "value": generated,
    }
    return await _users_page(request, viewer, session, secret=secret)


@router.post("/users/{username}/disable")
async def disable_user(
    username: Username, viewer: UserAdmin, session: DbSession, meta: Meta
) -> Response:
    """Disable a user: the API's ``POST /users/{username}/disable`` service."""
    return await _set_disabled(session, viewer, meta, username, disabled=True)


@router.post("/users/{username}/enable")
async def enable_user(
    username: Username, viewer: UserAdmin, session: DbSession, meta: Meta
) -> Response:
    """Enable a user: the API's ``POST /users/{username}/enable`` service."""
    return await _set_disabled(session, viewer, meta, username, disabled=False)


async def _set_disabled(
    session: AsyncSession, viewer: Viewer, meta: RequestMeta, username: str, *, disabled: bool
) -> Response:
    context = audit_context(viewer.principal, meta)
    try:
        user = await auth_service.set_user_disabled(session, context, username, disabled=disabled)
    except LastAdmin as exc:
        await session.rollback()
        return redirect_with_notice(
            "/users", _("Not changed: %(why)s.") % {"why": exc.message}, "bad"
        )
    if disabled:
        text = _("%(name)s is disabled: their sessions and API tokens ended.") % {
            "name": user.username
        }
    else:
        text = _("%(name)s is enabled again.") % {"name": user.username}
    return redirect_with_notice("/users", text)


@router.post("/users/{username}/role")
async def change_role(
    username: Username,
    viewer: UserAdmin,
    session: DbSession,
    meta: Meta,
    role: Annotated[str, Form(max_length=MAX_NAME)] = "",
) -> Response:
    """Give a user another role: the API's ``PUT /users/{username}/role`` service."""
    try:
        user = await auth_service.change_user_role(
            session, audit_context(viewer.principal, meta), username, role
        )
    except (LastAdmin, RoleNotFound) as exc:
        await session.rollback()
        return redirect_with_notice(
            "/users", _("Role not changed: %(why)s.") % {"why": exc.message}, "bad"
        )
    text = _("%(name)s now has the role %(role)s.") % {
        "name": user.username,
        "role": user.role.name,
    }
    # An admin who gave themselves a role without user:read would land on a 403 page.
    own = user.username == viewer.username
    if own and Permission.USER_READ not in auth_service.role_permissions(user.role):
        return redirect_with_notice("/me", text)
    return redirect_with_notice("/users", text)


@router.post("/users/{username}/password")
async def reset_password(
    request: Request,
    username: Username,
    viewer: UserAdmin,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
) -> Response:
    """A generated password for a user: the API's ``POST /users/{username}/password``
    service; shown in this answer only, and their sessions and access tokens end."""
    user = await auth_service.get_user(session, username)
    generated = await auth_service.reset_password(
        session, components.auth, audit_context(viewer.principal, meta), user.username, None
    )
    if generated is None:  # the service generates one when given none
        msg = "no password was generated"
        raise RuntimeError(msg)
    secret = {
        "title": _("New password for %(name)s") % {"name": user.username},
        "label": _("Their new password"),
        "value": generated,
    }
    return await _users_page(request, viewer, session, secret=secret)


# ---------------------------------------------------------------------------- roles


async def _roles_page(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    *,
    errors: FormErrors | None = None,
    editing: str | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "roles": await views_users.roles(session),
        "permissions": views_users.every_permission(),
        "errors": errors or FormErrors(),
        "blank": FormErrors(),
        "editing": editing,
    }
    return page(request, "roles.html", viewer, context, name="roles", status_code=status_code)


@router.get("/roles")
async def roles(request: Request, viewer: UserReader, session: DbSession) -> Response:
    """Built-in and custom roles with their permission codes: the API's ``GET /roles``."""
    return await _roles_page(request, viewer, session)


@router.post("/roles")
async def create_role(
    request: Request,
    viewer: UserAdmin,
    session: DbSession,
    meta: Meta,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    description: Annotated[str, Form(max_length=MAX_DESCRIPTION)] = "",
    permissions: Codes = None,
) -> Response:
    """Create a custom role: the API's ``POST /roles`` service and rules."""
    body, errors = views_users.role_form(name, description, permissions or [])
    if body is not None:
        try:
            role = await auth_service.create_role(
                session,
                audit_context(viewer.principal, meta),
                name=body.name,
                description=body.description,
                permissions=body.permissions,
            )
        except RoleExists as exc:
            errors.fields["name"] = exc.message
        else:
            return redirect_with_notice("/roles", _("Role %(name)s created.") % {"name": role.name})
    await session.rollback()
    return await _roles_page(request, viewer, session, errors=errors, status_code=400)


@router.post("/roles/{name}")
async def update_role(
    request: Request,
    name: RoleName,
    viewer: UserAdmin,
    session: DbSession,
    meta: Meta,
    description: Annotated[str, Form(max_length=MAX_DESCRIPTION)] = "",
    permissions: Codes = None,
) -> Response:
    """Change a custom role's description and permissions: the API's ``PATCH
    /roles/{name}`` service (built-in roles are read-only)."""
    role = await auth_service.get_role(session, name)
    body, errors = views_users.role_form(role.name, description, permissions or [])
    if body is not None:
        try:
            await auth_service.update_role(
                session,
                audit_context(viewer.principal, meta),
                role.name,
                description=body.description,
                permissions=body.permissions,
            )
        except BuiltinRoleReadOnly as exc:
            await session.rollback()
            return redirect_with_notice(
                "/roles", _("Not changed: %(why)s.") % {"why": exc.message}, "bad"
            )
        return redirect_with_notice("/roles", _("Role %(name)s saved.") % {"name": role.name})
    await session.rollback()
    return await _roles_page(
        request, viewer, session, errors=errors, editing=role.name, status_code=400
    )


@router.post("/roles/{name}/delete")
async def delete_role(
    name: RoleName, viewer: UserAdmin, session: DbSession, meta: Meta
) -> Response:
    """Delete a custom role no user holds: the API's ``DELETE /roles/{name}`` service."""
    try:
        await auth_service.delete_role(session, audit_context(viewer.principal, meta), name)
    except (RoleInUse, BuiltinRoleReadOnly) as exc:
        await session.rollback()
        return redirect_with_notice(
            "/roles", _("Not deleted: %(why)s.") % {"why": exc.message}, "bad"
        )
    return redirect_with_notice("/roles", _("Role %(name)s deleted.") % {"name": name})
