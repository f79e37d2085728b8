"""``tgfleet token``: your own API tokens on the chosen server (``/api/v1/auth/tokens``).

The API lets an API token list its owner's tokens and revoke itself, but not create or
revoke other tokens: a leaked token must not be able to mint more. The CLI signs in with
an API token (the one ``tgfleet login`` saved), so ``create`` and ``revoke`` ask for your
password (on the terminal, or ``--password-stdin``) and act through a short password
login, as the web console does. The password is used once and never saved.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import typer

from tgfleet.cli import _remote
from tgfleet.cli._output import OUTPUT, Column, Output, ago, emit, stamp
from tgfleet.cli._runtime import (
    EXIT_FORBIDDEN,
    EXIT_USAGE,
    console,
    err_console,
    fail,
    read_password,
)

app = typer.Typer(
    help="Your API tokens: list, create (for CI and scripts), revoke.", no_args_is_help=True
)

#: How long a new token lives unless --expires-days says otherwise (as `tgfleet login`).
DEFAULT_EXPIRY_DAYS = 90
_PASSWORD_LOGINS = frozenset({"jwt", "console"})
PASSWORD_STDIN: Any = typer.Option(
    False,
    "--password-stdin",
    help="read your password from standard input (used once, never saved)",
)


def _columns(current: str | None) -> tuple[Column, ...]:
    return (
        Column("name", "name", key=True),
        Column("id", "id", key=True),
        Column("current", lambda t: "*" if current and t["name"] == current else ""),
        Column("scopes", lambda t: "all" if t["scopes"] is None else " ".join(t["scopes"])),
        Column("expires", lambda t: stamp(t["expires_at"]) or "never"),
        Column("last used", lambda t: ago(t["last_used_at"]) or "never"),
        Column("created", lambda t: stamp(t["created_at"]), wide=True),
        Column("prefix", "prefix", wide=True),
    )


@app.command("list")
def list_tokens(output: Output = OUTPUT) -> None:
    """Your API tokens (never their secrets); `*` marks the one this CLI signs in with.

    \b
    Examples:
      tgfleet token list
      tgfleet token list -o json
    """
    with _remote.client("token list") as api:
        me = api.get("/api/v1/auth/me")
        tokens = api.get("/api/v1/auth/tokens")
    emit(tokens, _columns(me.get("token_name")), output, empty="you have no API tokens")


@app.command()
def create(
    name: str = typer.Argument(..., help="unique among your tokens, e.g. ci"),
    expires_days: int = typer.Option(
        DEFAULT_EXPIRY_DAYS,
        "--expires-days",
        min=0,
        max=3650,
        help="the token's lifetime in days; 0: it never expires",
    ),
    scopes: list[str] | None = typer.Option(
        None,
        "--scope",
        metavar="PERMISSION",
        help="narrow the token to this permission (repeat it; default: all of yours)",
    ),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Create an API token for yourself and print its secret, once. Needs your password
    (asked, or --password-stdin). Piped, stdout is the secret alone.

    \b
    Examples:
      tgfleet token create laptop-backup --expires-days 30
      TOKEN=$(tgfleet token create ci --scope account:read --password-stdin < pw.txt)
    """
    body: dict[str, Any] = {"name": name}
    if expires_days:
        body["expires_at"] = (datetime.now(UTC) + timedelta(days=expires_days)).isoformat()
    if scopes:
        body["scopes"] = scopes
    chosen = _remote.require_target("token create")
    with _remote.Client(chosen) as api:
        me = api.get("/api/v1/auth/me")
    with _password_login(chosen, me, "create a token", password_stdin=password_stdin) as api:
        created = api.post("/api/v1/auth/tokens", body)
    expiry = stamp(created["expires_at"]) or "never"
    err_console.print(
        f"token {created['name']} created (id {created['id']}, expires {expiry}); "
        "its secret, shown once:",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.write(created["token"] + "\n")


@app.command()
def revoke(
    token: str = typer.Argument(
        ..., help="the token's name, id, or a unique id prefix of 6+ characters"
    ),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Revoke one of your API tokens: it stops working with the next request. Needs your
    password (asked, or --password-stdin); the token this CLI signs in with is revoked by
    `tgfleet logout`.

    \b
    Examples:
      tgfleet token revoke ci
      tgfleet token revoke 3f2a9c1e
    """
    chosen = _remote.require_target("token revoke")
    with _remote.Client(chosen) as api:
        me = api.get("/api/v1/auth/me")
        tokens = api.get("/api/v1/auth/tokens")
    token_id = _remote.pick(token, [(str(t["id"]), t["name"]) for t in tokens], "token")
    name = next(t["name"] for t in tokens if str(t["id"]) == token_id)
    if me.get("via") == "api_token" and name == me.get("token_name"):
        where = f"context {chosen.context}" if chosen.context else "this CLI"
        raise fail(
            f"{name!r} is the token {where} signs in with: `tgfleet logout` revokes it and "
            "forgets the context",
            EXIT_USAGE,
        )
    with _password_login(chosen, me, "revoke a token", password_stdin=password_stdin) as api:
        api.delete(f"/api/v1/auth/tokens/{token_id}")
    console.print(f"token {name} ({token_id}) revoked", highlight=False)


def _password_login(
    chosen: _remote.Target, me: Mapping[str, Any], what: str, *, password_stdin: bool
) -> _remote.Client:
    """A client acting with a password login (a short-lived JWT) as the signed-in user;
    the chosen credential itself when it is one already."""
    if me.get("via") in _PASSWORD_LOGINS and not password_stdin:
        return _remote.Client(chosen)
    username = str(me["username"])
    if password_stdin:
        password = read_password()
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {username} at {chosen.server}: ")
    else:
        raise fail(
            f"to {what} the API needs a password login, not an API token (what this CLI "
            "signs in with): pass --password-stdin, or run it on a terminal to be asked",
            EXIT_USAGE,
        )
    with _remote.Client(_remote.Target(chosen.server, None, chosen.context)) as anonymous:
        answer = anonymous.request(
            "POST",
            "/api/v1/auth/login",
            json_body={"username": username, "password": password},
            expect=(200, 401),
        )
    if answer.status_code == 401:
        raise fail(f"wrong password for {username} at {chosen.server}", EXIT_FORBIDDEN)
    jwt = answer.json()["access_token"]
    return _remote.Client(_remote.Target(chosen.server, jwt, chosen.context))
