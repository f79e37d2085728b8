"""What the users, roles and own-account pages show, from auth's services (never its
repositories): users a page at a time, every role with its permission codes, the viewer's own
API tokens (never their secrets) and console sessions; and the form rules those pages apply
before calling the API twin's service (a refused field names its problem, nothing written)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.auth import service as auth_service
from tgfleet.auth.permissions import Permission, parse_permissions
from tgfleet.auth.schemas import ApiTokenCreate, RoleCreate
from tgfleet.auth.security import Security
from tgfleet.console.domain_texts import permission_description, role_description
from tgfleet.console.guard import Viewer
from tgfleet.console.i18n import gettext as _
from tgfleet.kit.clock import utcnow
from tgfleet.models import ApiToken, Role, User

USERS_PAGE = 50
#: A form's list of permission codes is bounded: there are fewer codes than this.
MAX_CODES = 64
#: The expiry presets a new token offers, in days ("never" and a date besides).
EXPIRY_DAYS: tuple[int, ...] = (7, 30, 90, 365)
DEFAULT_EXPIRY = "30"


@dataclass(frozen=True, slots=True)
class PermissionInfo:
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class RoleInfo:
    name: str
    description: str
    builtin: bool
    permissions: list[str]


@dataclass(frozen=True, slots=True)
class UsersPage:
    users: list[User]  # their role loaded
    roles: list[RoleInfo]
    cursor: str | None
    next_cursor: str | None
    q: str


@dataclass(frozen=True, slots=True)
class MePage:
    tokens: list[ApiToken]
    sessions: list[auth_service.ConsoleSessionInfo]
    current_session: uuid.UUID  # the viewer's own, marked "this session"
    now: datetime  # a token expired at or before it is marked so
    permissions: list[PermissionInfo]  # the viewer's own: what a token's scopes may name
    expiry_days: tuple[int, ...] = EXPIRY_DAYS


@dataclass(slots=True)
class FormErrors:
    """A refused form: its problems by field name, and the values to fill it in again."""

    fields: dict[str, str] = field(default_factory=dict)
    values: dict[str, object] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.fields)


def every_permission() -> list[PermissionInfo]:
    return [PermissionInfo(code.value, permission_description(code)) for code in Permission]


def _role_info(role: Role) -> RoleInfo:
    return RoleInfo(
        name=role.name,
        description=role_description(role.name, role.description, builtin=role.builtin),
        builtin=role.builtin,
        permissions=sorted(auth_service.role_permissions(role)),
    )


async def roles(session: AsyncSession) -> list[RoleInfo]:
    """Built-in roles first, then custom ones, by name (the API's order)."""
    return [_role_info(role) for role in await auth_service.list_roles(session)]


async def users_page(session: AsyncSession, *, cursor: str | None, q: str) -> UsersPage:
    result = await auth_service.list_users(
        session, cursor=cursor, limit=USERS_PAGE, q=q.strip() or None
    )
    return UsersPage(
        users=result.items,
        roles=await roles(session),
        cursor=cursor,
        next_cursor=result.next_cursor,
        q=q,
    )


async def me_page(session: AsyncSession, security: Security, viewer: Viewer) -> MePage:
    principal = viewer.principal
    if principal.user_id is None:  # a console session always has its user
        msg = "a console viewer without a user"
        raise RuntimeError(msg)
    now = utcnow()
    tokens = await auth_service.list_api_tokens(session, principal)
    sessions = await auth_service.list_console_sessions(
        session, principal.user_id, security=security
    )
    return MePage(
        tokens=tokens,
        sessions=sessions,
        current_session=viewer.session.id,
        now=now,
        permissions=[
            info for info in every_permission() if Permission(info.code) in principal.permissions
        ],
    )


def problem_text(error: ValidationError) -> dict[str, str]:
    """A schema's refusal as one sentence per field (pydantic's "Value error, " prefix off)."""
    found: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "form"
        message = str(item["msg"]).removeprefix("Value error, ")
        found.setdefault(name, message)
    return found


def parse_codes(codes: list[str], errors: FormErrors, field_name: str) -> list[Permission]:
    """Permission codes from a form's checkboxes; unknown ones are named (shortened: the
    field is hostile input) as the field's problem."""
    try:
        return sorted(parse_permissions(codes))
    except ValueError:
        unknown = sorted({code[:40] for code in codes if code not in Permission._value2member_map_})
        errors.fields[field_name] = _("Unknown permission codes: %(codes)s") % {
            "codes": ", ".join(unknown)
        }
        return []


def role_form(
    name: str, description: str, codes: list[str]
) -> tuple[RoleCreate | None, FormErrors]:
    """A custom role's form checked as the API checks ``POST /roles``."""
    errors = FormErrors(values={"name": name, "description": description, "permissions": codes})
    permissions = parse_codes(codes, errors, "permissions")
    if not codes:
        errors.fields["permissions"] = _("Choose at least one permission.")
    if errors:
        return None, errors
    try:
        body = RoleCreate.model_validate(
            {"name": name, "description": description, "permissions": permissions}
        )
    except ValidationError as exc:
        errors.fields.update(problem_text(exc))
        return None, errors
    return body, errors


def token_form(
    viewer: Viewer,
    name: str,
    scopes: list[str],
    expires: str,
    expires_on: str,
    *,
    now: datetime | None = None,
) -> tuple[ApiTokenCreate | None, FormErrors]:
    """A new token's form checked as the API checks ``POST /auth/tokens`` (scopes within
    the viewer's own permissions, an expiry in the future), with the console's presets: a
    number of days, never, or a date (the token works through that day, UTC)."""
    errors = FormErrors(
        values={"name": name, "scopes": scopes, "expires": expires, "expires_on": expires_on}
    )
    moment = now or utcnow()
    wanted = parse_codes(scopes, errors, "scopes")
    extra = sorted(set(wanted) - viewer.principal.permissions)
    if extra:
        errors.fields["scopes"] = _("You do not hold these permissions: %(codes)s") % {
            "codes": ", ".join(extra)
        }
    expires_at: datetime | None = None
    if expires == "never":
        expires_at = None
    elif expires == "date":
        try:
            day = date.fromisoformat(expires_on.strip())
        except ValueError:
            errors.fields["expires_on"] = _("Give the expiry date as YYYY-MM-DD.")
        else:
            expires_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
            if expires_at <= moment:
                errors.fields["expires_on"] = _(
                    "The date %(day)s has passed; choose today or a later day."
                ) % {"day": day.isoformat()}
    elif expires.isdigit() and int(expires) in EXPIRY_DAYS:
        expires_at = moment + timedelta(days=int(expires))
    else:
        errors.fields["expires"] = _("Choose one of the expiry presets.")
    try:
        body = ApiTokenCreate.model_validate(
            {"name": name, "scopes": wanted or None, "expires_at": expires_at}
        )
    except ValidationError as exc:
        errors.fields.update(problem_text(exc))
        return None, errors
    return (None if errors else body), errors
