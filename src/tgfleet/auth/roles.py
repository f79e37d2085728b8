"""Roles: the built-in ones (permissions from code) and custom ones (from the database).

Every change is audited in the caller's unit of work; services flush, the unit of work
commits.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.exceptions import BuiltinRoleReadOnly, RoleExists, RoleInUse, RoleNotFound
from tgfleet.auth.permissions import BUILTIN_ROLES, Permission, parse_permissions
from tgfleet.auth.repository import RoleRepository
from tgfleet.models import Role


def role_permissions(role: Role) -> frozenset[Permission]:
    """A role's permissions: built-in roles from code, custom roles from the database."""
    if role.builtin and role.name in BUILTIN_ROLES:
        return BUILTIN_ROLES[role.name]
    return parse_permissions(list(role.permissions))


async def get_role(session: AsyncSession, name: str) -> Role:
    role = await RoleRepository(session).by_name(name)
    if role is None:
        raise RoleNotFound(f"no role named {name!r}")
    return role


async def list_roles(session: AsyncSession) -> list[Role]:
    return await RoleRepository(session).list_all()


async def create_role(
    session: AsyncSession,
    context: AuditContext,
    *,
    name: str,
    description: str,
    permissions: list[Permission],
) -> Role:
    roles = RoleRepository(session)
    if await roles.by_name(name) is not None:
        raise RoleExists(f"a role named {name!r} already exists")
    role = Role(
        name=name,
        description=description,
        builtin=False,
        permissions=sorted({str(p) for p in permissions}),
    )
    try:
        await roles.add(role)
    except IntegrityError as exc:
        raise RoleExists(f"a role named {name!r} already exists") from exc
    await audit_service.record(
        session,
        context,
        action="role.create",
        target=f"role:{name}",
        details={"permissions": role.permissions},
    )
    return role


async def update_role(
    session: AsyncSession,
    context: AuditContext,
    name: str,
    *,
    description: str | None,
    permissions: list[Permission] | None,
) -> Role:
    role = await get_role(session, name)
    if role.builtin:
        raise BuiltinRoleReadOnly(f"the built-in role {name!r} cannot be changed")
    changes: dict[str, object] = {}
    if description is not None and description != role.description:
        role.description = description
        changes["description"] = description
    if permissions is not None:
        codes = sorted({str(p) for p in permissions})
        if codes != role.permissions:
            changes["permissions"] = {"from": role.permissions, "to": codes}
            role.permissions = codes
    if changes:
        await session.flush()
        await audit_service.record(
            session, context, action="role.update", target=f"role:{name}", details=changes
        )
    return role


async def delete_role(session: AsyncSession, context: AuditContext, name: str) -> None:
    roles = RoleRepository(session)
    role = await get_role(session, name)
    if role.builtin:
        raise BuiltinRoleReadOnly(f"the built-in role {name!r} cannot be deleted")
    in_use = await roles.users_with_role(role.id)
    if in_use:
        raise RoleInUse(f"role {name!r} is held by {in_use} user(s); change their role first")
    await roles.delete(role)
    await audit_service.record(session, context, action="role.delete", target=f"role:{name}")
