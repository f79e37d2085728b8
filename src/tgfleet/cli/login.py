"""``tgfleet login`` and ``tgfleet logout``: a named API token per server, saved as a context.

``login`` signs in with a password (prompted, or ``--password-stdin``) and creates an API
token named for this machine (``cli alice@laptop``), or takes a token you already have
(``--token-stdin``); the password is used once and never saved. ``logout`` revokes the
token on the server and forgets the context.
"""

from __future__ import annotations

import getpass
import secrets
import socket
import sys
from datetime import UTC, datetime, timedelta

import typer

from tgfleet.cli import _complete, _remote
from tgfleet.cli._runtime import EXIT_USAGE, console, fail, os_user

#: How long a login's token lives unless --expires says otherwise.
DEFAULT_EXPIRY_DAYS = 90


def login(
    server: str | None = typer.Option(
        None, "--server", metavar="URL", help="the server, e.g. https://tgfleet.example.org"
    ),
    username: str | None = typer.Option(
        None, "--username", "-u", help="default: asked, or your login name"
    ),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from standard input"
    ),
    token_stdin: bool = typer.Option(
        False, "--token-stdin", help="read an existing API token from standard input"
    ),
    name: str | None = typer.Option(
        None, "--name", help="the context's name (default: the server's host[:port])"
    ),
    expires_days: int = typer.Option(
        DEFAULT_EXPIRY_DAYS,
        "--expires-days",
        min=0,
        max=3650,
        help="the new token's lifetime in days; 0: it never expires",
    ),
) -> None:
    """Sign in to a server and save it as the current context.

    \b
    Examples:
      tgfleet login --server https://tgfleet.example.org
      echo "$TOKEN" | tgfleet login --server https://tgfleet.example.org --token-stdin
    """
    chosen = server or _remote._choice["server"]
    if not chosen:
        raise fail("which server? pass --server URL", EXIT_USAGE)
    if password_stdin and token_stdin:
        raise fail("--password-stdin and --token-stdin exclude each other", EXIT_USAGE)
    url = _remote.normalise_server(chosen)
    if url.startswith("http://") and not _remote.is_loopback(url):
        _remote.warn(
            f"{url} is plain http: the password and the token cross the network unencrypted"
        )
    config = _remote.Config.load()
    context_name = name or url.split("://", 1)[1]
    old = config.contexts.get(context_name)

    if token_stdin:
        token = sys.stdin.readline().strip()
        if not token:
            raise fail("--token-stdin given but standard input was empty", EXIT_USAGE)
        with _remote.Client(_remote.Target(url, token, context_name)) as api:
            me = api.get("/api/v1/auth/me")
        saved = _remote.Context(server=url, token=token, user=me["username"])
        saved.token_name = me.get("token_name")
    else:
        user = username or _ask_username()
        password = _read_password(password_stdin, user, url)
        with _remote.Client(_remote.Target(url, None, context_name)) as anonymous:
            issued = anonymous.post("/api/v1/auth/login", {"username": user, "password": password})
        with _remote.Client(_remote.Target(url, issued["access_token"], context_name)) as api:
            body: dict[str, object] = {"name": _token_name()}
            if expires_days:
                body["expires_at"] = (datetime.now(UTC) + timedelta(days=expires_days)).isoformat()
            created = api.post("/api/v1/auth/tokens", body)
        saved = _remote.Context(
            server=url,
            token=created["token"],
            user=user,
            token_id=created["id"],
            token_name=created["name"],
        )

    config.contexts[context_name] = saved
    config.current = context_name
    config.save()
    if old is not None and old.token_id and old.token != saved.token:
        _revoke_quietly(_remote.Target(_remote.normalise_server(old.server), old.token), old)
    console.print(
        f"signed in to {url} as {saved.user}; context [bold]{context_name}[/bold] is current "
        f"({config.path})"
    )


def logout(
    name: str | None = typer.Argument(
        None,
        help="the context (default: the current one)",
        autocompletion=_complete.context_names,
    ),
) -> None:
    """Revoke the context's API token on its server and forget the context.

    \b
    Example:
      tgfleet logout prod
    """
    config = _remote.Config.load()
    context_name = name or _remote._choice["context"] or config.current
    if context_name is None or context_name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none saved"
        raise fail(
            f"no context {context_name or ''} to log out of (known: {known})".replace("  ", " "), 2
        )
    saved = config.contexts.pop(context_name)
    revoked = _revoke_quietly(
        _remote.Target(_remote.normalise_server(saved.server), saved.token), saved
    )
    if config.current == context_name:
        config.current = None
    config.save()
    said = (
        "its token revoked" if revoked else "its token could not be revoked (it may have expired)"
    )
    console.print(f"logged out of {context_name}: {said}")


def _revoke_quietly(chosen: _remote.Target, saved: _remote.Context) -> bool:
    """Revoke a saved token; False when the server refuses or cannot be reached."""
    if not saved.token_id:
        return False
    import httpx

    try:
        response = httpx.delete(
            f"{chosen.server}/api/v1/auth/tokens/{saved.token_id}",
            headers={"Authorization": f"Bearer {saved.token}"},
            timeout=_remote.TIMEOUT,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 204


def _ask_username() -> str:
    default = os_user()
    if not sys.stdin.isatty():
        return default
    return str(typer.prompt("Username", default=default))


def _read_password(from_stdin: bool, user: str, url: str) -> str:
    if from_stdin or not sys.stdin.isatty():
        if not from_stdin:
            raise fail("no terminal to ask the password on: pass --password-stdin", EXIT_USAGE)
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {user} at {url}: ")
    if not password:
        raise fail("an empty password", EXIT_USAGE)
    return password


def _token_name() -> str:
    """``cli alice@laptop 2026-12-07 a1b2``: who, where and when, unique per login (a
    user's token names are unique; a second machine or a second login gets its own)."""
    host = socket.gethostname() or "unknown-host"
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return f"cli {os_user()}@{host} {when} {secrets.token_hex(2)}"[-100:]
