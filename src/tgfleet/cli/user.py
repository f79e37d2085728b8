"""``tgfleet user``: manage operators from the shell (acts as the local admin, audited)."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.auth import service as auth_service
from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session, security_for
from tgfleet.cli._runtime import console, read_password
from tgfleet.models import User

app = typer.Typer(help="Create, list and disable users.", no_args_is_help=True)


@app.command()
def create(
    name: str = typer.Argument(..., help="username"),
    role: str = typer.Option(..., "--role", help="admin, operator, viewer, auditor or custom"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from standard input"
    ),
) -> None:
    """Create a user; without --password-stdin a strong password is generated and printed."""
    settings = load_settings()
    password = read_password() if password_stdin else None
    security = security_for(settings)

    async def work(session: AsyncSession) -> tuple[User, str | None]:
        return await auth_service.create_user(
            session, security, cli_audit_context(), username=name, role=role, password=password
        )

    user, generated = run_in_session(settings, work)
    console.print(f"created user [bold]{user.username}[/bold] with role {user.role.name}")
    if generated:
        console.print(f"password (shown once): {generated}", highlight=False)


@app.command("list")
def list_users() -> None:
    """List every user with role and state."""
    settings = load_settings()

    async def work(session: AsyncSession) -> list[User]:
        users: list[User] = []
        cursor: str | None = None
        while True:
            page = await auth_service.list_users(session, cursor=cursor, limit=500)
            users.extend(page.items)
            if page.next_cursor is None:
                return users
            cursor = page.next_cursor

    table = Table("username", "role", "state", "last login")
    for user in run_in_session(settings, work):
        table.add_row(
            user.username,
            user.role.name,
            "disabled" if user.disabled else "enabled",
            user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never",
        )
    console.print(table)


@app.command()
def disable(name: str = typer.Argument(..., help="username")) -> None:
    """Disable a user (refused for the last enabled admin)."""
    _set_disabled(name, disabled=True)


@app.command()
def enable(name: str = typer.Argument(..., help="username")) -> None:
    """Enable a disabled user."""
    _set_disabled(name, disabled=False)


def _set_disabled(name: str, *, disabled: bool) -> None:
    settings = load_settings()

    async def work(session: AsyncSession) -> User:
        return await auth_service.set_user_disabled(
            session, cli_audit_context(), name, disabled=disabled
        )

    user = run_in_session(settings, work)
    console.print(f"{'disabled' if disabled else 'enabled'} user {user.username}")


@app.command("reset-password")
def reset_password(
    name: str = typer.Argument(..., help="username"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the new password from standard input"
    ),
) -> None:
    """Set a user's password (generated and printed without --password-stdin).

    The way back in for an admin who lost theirs; their access tokens stop working.
    """
    settings = load_settings()
    password = read_password() if password_stdin else None
    security = security_for(settings)

    async def work(session: AsyncSession) -> str | None:
        return await auth_service.reset_password(
            session, security, cli_audit_context(), name, password
        )

    generated = run_in_session(settings, work)
    console.print(f"password of {name} changed")
    if generated:
        console.print(f"password (shown once): {generated}", highlight=False)
