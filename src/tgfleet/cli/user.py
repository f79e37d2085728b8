"""``tgfleet user``: users and their roles.

Through the server's API (``/api/v1/users``, ``/api/v1/roles``) when a context or
``--server`` is chosen, as the signed-in user (permission ``user:read`` to look,
``user:admin`` to change). With no server chosen, the commands that had one keep their
database-direct path on the server's host, acting as the local admin: how the first admin
is created and how a lost admin password is reset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from tgfleet.cli import _complete, _remote
from tgfleet.cli._output import OUTPUT, Column, Output, ago, detail, emit, stamp
from tgfleet.cli._runtime import console, read_password

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tgfleet.models import User

app = typer.Typer(help="Users and their roles.", no_args_is_help=True)

NAME: Any = typer.Argument(..., help="the user's name", autocompletion=_complete.user_names)
PASSWORD_STDIN: Any = typer.Option(
    False, "--password-stdin", help="read the password from standard input"
)

COLUMNS = (
    Column("username", "username", key=True),
    Column("role", "role"),
    Column("state", lambda u: "disabled" if u["disabled"] else "enabled"),
    Column("last login", lambda u: ago(u["last_login_at"]) or "never"),
    Column("created", lambda u: stamp(u["created_at"]), wide=True),
    Column("id", "id", wide=True, key=True),
)
FIELDS = (
    Column("username", "username"),
    Column("id", "id"),
    Column("role", "role"),
    Column("state", lambda u: "disabled" if u["disabled"] else "enabled"),
    Column("last login", lambda u: stamp(u["last_login_at"]) or "never"),
    Column("created", lambda u: stamp(u["created_at"])),
    Column("updated", lambda u: stamp(u["updated_at"])),
)
ROLE_COLUMNS = (
    Column("name", "name", key=True),
    Column("builtin", "builtin"),
    Column("permissions", lambda r: " ".join(r["permissions"])),
    Column("description", "description", wide=True),
)


@app.command()
def create(
    name: str = NAME,
    role: str = typer.Option(
        ...,
        "--role",
        help="admin, operator, viewer, auditor or custom",
        autocompletion=_complete.role_names,
    ),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Create a user; without --password-stdin a strong password is generated and printed
    once. With no server chosen it runs on the server's host (the first admin).

    \b
    Examples:
      tgfleet user create bob --role operator
      printf '%s\\n' "$PASSWORD" | tgfleet user create ci --role viewer --password-stdin
    """
    password = read_password() if password_stdin else None
    if _remote.target() is None:
        created = _local_create(name, role, password)
    else:
        with _remote.client("user create") as api:
            created = api.post(
                "/api/v1/users", {"username": name, "role": role, "password": password}
            )
    console.print(f"created user [bold]{created['username']}[/bold] with role {created['role']}")
    _show_generated(created.get("generated_password"))


@app.command("list")
def list_users(
    query: str | None = typer.Option(None, "--query", "-q", help="part of the username"),
    output: Output = OUTPUT,
) -> None:
    """Every user with their role and state.

    \b
    Examples:
      tgfleet user list
      tgfleet user list -q ops -o json
    """
    if _remote.target() is None:
        users = _local_list(query)
    else:
        with _remote.client("user list") as api:
            users = list(api.pages("/api/v1/users", {"q": query, "limit": 500}))
    emit(users, COLUMNS, output, empty="no users")


@app.command()
def show(name: str = NAME, output: Output = OUTPUT) -> None:
    """One user: role, state, last login.

    \b
    Example:
      tgfleet user show bob
    """
    with _remote.client("user show") as api:
        user = api.get(f"/api/v1/users/{_path(name)}")
    detail(user, FIELDS, output)


@app.command()
def disable(name: str = NAME) -> None:
    """Disable a user: their tokens stop working at once (refused for the last admin).

    \b
    Example:
      tgfleet user disable bob
    """
    _set_disabled(name, disabled=True)


@app.command()
def enable(name: str = NAME) -> None:
    """Enable a disabled user.

    \b
    Example:
      tgfleet user enable bob
    """
    _set_disabled(name, disabled=False)


@app.command("set-role")
def set_role(
    name: str = NAME,
    role: str = typer.Argument(
        ..., help="a role from `tgfleet user roles`", autocompletion=_complete.role_names
    ),
) -> None:
    """Give a user another role (the last admin cannot be demoted).

    \b
    Example:
      tgfleet user set-role bob viewer
    """
    if _remote.target() is None:
        user = _local(
            lambda session, auth, context: auth.change_user_role(session, context, name, role)
        )
    else:
        with _remote.client("user set-role") as api:
            user = api.put(f"/api/v1/users/{_path(name)}/role", {"role": role})
    console.print(f"user {user['username']} has role {user['role']}", highlight=False)


@app.command("reset-password")
def reset_password(name: str = NAME, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set a user's password (generated and printed once without --password-stdin); their
    access tokens stop working. On the server's host with no server chosen: the way back
    in for an admin who lost theirs.

    \b
    Examples:
      tgfleet user reset-password bob
      printf '%s\\n' "$PASSWORD" | tgfleet user reset-password admin --password-stdin
    """
    password = read_password() if password_stdin else None
    if _remote.target() is None:
        generated = _local_reset(name, password)
    else:
        with _remote.client("user reset-password") as api:
            done = api.post(f"/api/v1/users/{_path(name)}/password", {"password": password})
        generated = done.get("generated_password")
    console.print(f"password of {name} changed")
    _show_generated(generated)


@app.command()
def roles(output: Output = OUTPUT) -> None:
    """The roles and the permissions each holds.

    \b
    Example:
      tgfleet user roles -o wide
    """
    with _remote.client("user roles") as api:
        found = api.get("/api/v1/roles")
    emit(found, ROLE_COLUMNS, output, empty="no roles")


def _set_disabled(name: str, *, disabled: bool) -> None:
    if _remote.target() is None:
        user = _local(
            lambda session, auth, context: auth.set_user_disabled(
                session, context, name, disabled=disabled
            )
        )
    else:
        verb = "disable" if disabled else "enable"
        with _remote.client(f"user {verb}") as api:
            user = api.post(f"/api/v1/users/{_path(name)}/{verb}")
    console.print(f"{'disabled' if disabled else 'enabled'} user {user['username']}")


def _show_generated(password: str | None) -> None:
    if password:
        console.print(f"password (shown once): {password}", highlight=False)


def _path(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


# ----------------------------------------------------------------------- database-direct


def _read(user: User) -> dict[str, Any]:
    """A user row in the API's shape (``UserRead``)."""
    return {
        "id": str(user.id),
        "username": user.username,
        "role": user.role.name,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


def _local(change: Callable[[AsyncSession, Any, Any], Any]) -> dict[str, Any]:
    """Run ``change(session, auth_service, audit_context)`` (a coroutine giving a user) as
    the local admin, in one unit of work; the user in the API's shape."""
    from tgfleet.auth import service as auth_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session

    settings = load_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _read(await change(session, auth_service, cli_audit_context()))

    return run_in_session(settings, work)


def _local_create(name: str, role: str, password: str | None) -> dict[str, Any]:
    from tgfleet.auth import service as auth_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session, security_for

    settings = load_settings()
    security = security_for(settings)

    async def work(session: AsyncSession) -> dict[str, Any]:
        user, generated = await auth_service.create_user(
            session, security, cli_audit_context(), username=name, role=role, password=password
        )
        return {**_read(user), "generated_password": generated}

    return run_in_session(settings, work)


def _local_list(query: str | None) -> list[dict[str, Any]]:
    from tgfleet.auth import service as auth_service
    from tgfleet.cli._local import load_settings, run_in_session

    settings = load_settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await auth_service.list_users(session, cursor=cursor, limit=500, q=query)
            users.extend(_read(user) for user in page.items)
            if page.next_cursor is None:
                return users
            cursor = page.next_cursor

    return run_in_session(settings, work, read_only=True)


def _local_reset(name: str, password: str | None) -> str | None:
    from tgfleet.auth import service as auth_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session, security_for

    settings = load_settings()
    security = security_for(settings)

    async def work(session: AsyncSession) -> str | None:
        return await auth_service.reset_password(
            session, security, cli_audit_context(), name, password
        )

    return run_in_session(settings, work)
