"""Remote mode: saved contexts (a server and a named API token), and the API client.

The config file (``$XDG_CONFIG_HOME/tgfleet/config.json``, else ``~/.config/tgfleet/``;
``TGFLEET_CONFIG`` names another) holds tokens, so it is written 0600 in a 0700 directory
and refused when group or others can read it, like the vault key. Its shape::

    {"current-context": "prod",
     "contexts": {"prod": {"server": "https://...", "user": "alice",
                           "token": "tgf_...", "token_id": "...", "token_name": "..."}}}

Which server a command talks to: ``--server``/``TGFLEET_SERVER`` (with the token of a
context for that server, or ``TGFLEET_TOKEN``), else ``--context``/``TGFLEET_CONTEXT``,
else the current context; none of these set means local mode (the database-direct
commands on the server's host). Only the standard library and httpx (on the first
request) are imported here: a remote command starts fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from tgfleet.cli._runtime import (
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_USAGE,
    err_console,
    fail,
)

if TYPE_CHECKING:
    import httpx

CONFIG_ENV = "TGFLEET_CONFIG"
TOKEN_ENV = "TGFLEET_TOKEN"  # noqa: S105 - the variable's name, not a secret
#: Seconds a request may take before the command gives up (exit 3).
TIMEOUT = 30.0
#: The shortest id prefix accepted where an id is (git's and docker's habit, made safer).
MIN_PREFIX = 6
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


# ------------------------------------------------------------------------------ config


@dataclass
class Context:
    server: str
    token: str = field(repr=False)
    user: str | None = None
    token_id: str | None = None
    token_name: str | None = None


@dataclass
class Config:
    path: Path
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """The saved contexts; a missing file is an empty config. A file group or others
        can read, or one that is not ours, exits 2 with the fix."""
        path = path or config_path()
        try:
            info = path.stat()
        except FileNotFoundError:
            return cls(path)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise fail(
                f"{path} has mode {mode:04o}, open to group or others, and holds API tokens; "
                f"run: chmod 600 {path}",
                EXIT_USAGE,
            )
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            contexts = {
                str(name): Context(**{k: v for k, v in body.items() if k in _CONTEXT_FIELDS})
                for name, body in raw.get("contexts", {}).items()
            }
            current = raw.get("current-context")
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise fail(f"{path} is not a tgfleet config file ({exc}); fix or remove it", 2) from exc
        return cls(path, current if current in contexts else None, contexts)

    def save(self) -> None:
        """Write atomically, 0600 (a 0700 directory created if needed)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {
            "current-context": self.current,
            "contexts": {name: asdict(ctx) for name, ctx in sorted(self.contexts.items())},
        }
        fd, temporary = tempfile.mkstemp(prefix=".config-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                os.fchmod(out.fileno(), 0o600)
                json.dump(body, out, indent=2)
                out.write("\n")
            Path(temporary).replace(self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def for_server(self, server: str) -> tuple[str, Context] | None:
        """The saved context for ``server`` (the current one first), if any."""
        wanted = normalise_server(server)
        names = sorted(self.contexts, key=lambda name: name != self.current)
        for name in names:
            if normalise_server(self.contexts[name].server) == wanted:
                return name, self.contexts[name]
        return None


_CONTEXT_FIELDS = frozenset(Context.__dataclass_fields__)


def config_path() -> Path:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tgfleet" / "config.json"


def normalise_server(server: str) -> str:
    """``https://host:443/`` and ``https://host`` are one server; a bare host means https.
    A value that is not an http(s) URL exits 2."""
    text = server.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise fail(f"{server!r} is not a server URL: use e.g. https://tgfleet.example.org", 2)
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError as exc:
        raise fail(f"{server!r} has an invalid port", 2) from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = host if port in {None, default} else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


def is_loopback(server: str) -> bool:
    return (urlsplit(server).hostname or "") in _LOOPBACK


# ------------------------------------------------------------------------------ target


@dataclass(frozen=True)
class Target:
    """The server a command talks to and the token it presents."""

    server: str
    token: str | None = field(repr=False)
    context: str | None = None  # the saved context's name, when there is one
    from_env: bool = False  # the token came from TGFLEET_TOKEN


_choice: dict[str, str | None] = {"server": None, "context": None}


def choose(*, server: str | None, context: str | None) -> None:
    """The root command's ``--server``/``--context`` (or their variables), for `target`."""
    _choice["server"] = server or None
    _choice["context"] = context or None


def target() -> Target | None:
    """The chosen server, or None for local mode (no flag, variable or current context)."""
    server, name = _choice["server"], _choice["context"]
    if server is None and name is None and not config_path().exists():
        return None  # the common local case: no file to read
    config = Config.load()
    if server is not None:
        url = normalise_server(server)
        saved = config.for_server(url)
        from_env = os.environ.get(TOKEN_ENV)
        if from_env:  # the variable's token, not a context's: no context to name in errors
            return Target(url, from_env, None, from_env=True)
        return Target(url, saved[1].token if saved else None, saved[0] if saved else None)
    if name is not None:
        if name not in config.contexts:
            known = ", ".join(sorted(config.contexts)) or "none saved yet"
            raise fail(f"no context named {name!r} (known: {known})", EXIT_USAGE)
    else:
        name = config.current
        if name is None:
            return None
    chosen = config.contexts[name]
    return Target(normalise_server(chosen.server), chosen.token, name)


def require_target(command: str) -> Target:
    """The chosen server; exit 2 with how to choose one when there is none."""
    chosen = target()
    if chosen is None:
        raise fail(
            f"`tgfleet {command}` talks to a server's API and none is chosen: run "
            "`tgfleet login --server URL` first (or pass --server, or set TGFLEET_SERVER)",
            EXIT_USAGE,
        )
    return chosen


# ------------------------------------------------------------------------------ client


class ApiError(Exception):
    """An answer the command did not expect; `fail_with` turns it into one line."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class Client:
    """A blocking client for the tgfleet API: JSON in and out, errors as one line and the
    documented exit codes (3 unreachable, 4 not signed in or not permitted)."""

    def __init__(self, chosen: Target) -> None:
        import httpx

        self.target = chosen
        # No version in the User-Agent: reading it (importlib.metadata) costs ~50 ms a start.
        headers = {"User-Agent": "tgfleet-cli", "Accept": "application/json"}
        if chosen.token:
            headers["Authorization"] = f"Bearer {chosen.token}"
        # An http:// server never reaches TLS (redirects are not followed): no SSL context,
        # whose CA bundle costs ~40 ms a start. https:// verifies as httpx does by default.
        plain = chosen.server.startswith("http://")
        self._http = httpx.Client(
            base_url=chosen.server,
            headers=headers,
            timeout=TIMEOUT,
            verify=not plain,
            follow_redirects=False,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Iterable[int] = (200, 201, 204),
    ) -> httpx.Response:
        """The response, when its status is one of ``expect``; otherwise the command ends
        with the API's message (`fail_with`)."""
        import httpx

        try:
            response = self._http.request(
                method,
                path,
                params=_pairs(params),
                json=json_body,
                content=content,
                headers=dict(headers or {}),
            )
        except httpx.TimeoutException as exc:
            raise fail(f"{self.target.server} did not answer within {TIMEOUT:.0f} s", 3) from exc
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach {self.target.server}: {_reason(exc)}", 3) from exc
        if response.status_code not in set(expect):
            self.fail_with(_api_error(response))
        return response

    @contextlib.contextmanager
    def stream(self, method: str, path: str, *, json_body: Any = None) -> Iterator[httpx.Response]:
        """A response read as it arrives (a large download), when its status is 200;
        otherwise the command ends with the API's message, as `request`."""
        import httpx

        try:
            with self._http.stream(method, path, json=json_body) as response:
                if response.status_code != 200:
                    response.read()
                    self.fail_with(_api_error(response))
                yield response
        except httpx.TimeoutException as exc:
            raise fail(f"{self.target.server} did not answer within {TIMEOUT:.0f} s", 3) from exc
        except httpx.HTTPError as exc:
            raise fail(f"cannot reach {self.target.server}: {_reason(exc)}", 3) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.request("POST", path, json_body=body)
        return response.json() if response.content else None

    def put(self, path: str, body: Any = None) -> Any:
        response = self.request("PUT", path, json_body=body)
        return response.json() if response.content else None

    def delete(self, path: str) -> Any:
        response = self.request("DELETE", path)
        return response.json() if response.content else None

    def pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every item of a paginated listing (``{"items": [...], "next_cursor": ...}``),
        following the cursor."""
        query = dict(params or {})
        while True:
            page = self.request("GET", path, params=query).json()
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    def fail_with(self, error: ApiError) -> NoReturn:
        """End the command with the API's error as one line and its exit code."""
        where = f" (context {self.target.context})" if self.target.context else ""
        if error.status == 401 and self.target.from_env:
            raise fail(
                f"not signed in to {self.target.server}: it refused the token in {TOKEN_ENV} "
                "(expired, revoked or mistyped); set a valid one",
                EXIT_FORBIDDEN,
            )
        if error.status == 401:
            hint = (
                f"set TGFLEET_TOKEN or run `tgfleet login --server {self.target.server}`"
                if self.target.token is None
                else f"run `tgfleet login --server {self.target.server}` again"
            )
            state = "no token" if self.target.token is None else "the token was refused"
            raise fail(f"not signed in to {self.target.server}{where}: {state}; {hint}", 4)
        if error.status == 403:
            raise fail(f"not permitted: {error.detail}", EXIT_FORBIDDEN)
        if error.status == 429:
            raise fail(f"the server is throttling: {error.detail}", EXIT_FAILED)
        raise fail(error.detail, EXIT_FAILED)


def _pairs(
    params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None,
) -> list[tuple[str, str | int | float | bool | None]]:
    """Query pairs without the unset ones; a list value repeats its name (``state=a&state=b``)."""
    if params is None:
        return []
    items = params.items() if isinstance(params, Mapping) else params
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for name, value in items:
        values = value if isinstance(value, list | tuple) else [value]
        for one in values:
            if one is None:
                continue
            pairs.append((name, str(one).lower() if isinstance(one, bool) else str(one)))
    return pairs


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return ApiError(response.status_code, str(body.get("error", "")), body["detail"])
    reason = response.reason_phrase or "error"
    return ApiError(
        response.status_code, "", f"the server answered {response.status_code} {reason}"
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def client(command: str) -> Client:
    """A client for the chosen server (`require_target`)."""
    return Client(require_target(command))


# ------------------------------------------------------------------------------ ids


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def pick(ref: str, candidates: Iterable[tuple[str, str]], kind: str) -> str:
    """The one candidate id ``ref`` names: the full id, or a unique prefix of at least
    `MIN_PREFIX` characters (``candidates`` are ``(id, name)`` pairs; an exact name also
    counts). Exit 1 when nothing matches, 2 when the prefix is too short or ambiguous."""
    wanted = ref.strip().lower()
    pairs = list(candidates)
    for one_id, name in pairs:
        if wanted == one_id.lower() or (name and ref.strip() == name):
            return one_id
    if len(wanted) < MIN_PREFIX:
        raise fail(
            f"{ref!r} is too short for an id prefix: give at least {MIN_PREFIX} characters",
            EXIT_USAGE,
        )
    matches = [(one_id, name) for one_id, name in pairs if one_id.lower().startswith(wanted)]
    if not matches:
        raise fail(f"no {kind} has an id starting with {ref!r}", EXIT_FAILED)
    if len(matches) > 1:
        shown = ", ".join(f"{i} ({n})" if n else i for i, n in matches[:5])
        more = f" and {len(matches) - 5} more" if len(matches) > 5 else ""
        raise fail(
            f"{ref!r} is ambiguous: it starts the ids of {len(matches)} {kind}s: {shown}{more}; "
            "give more characters",
            EXIT_USAGE,
        )
    return matches[0][0]


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}", soft_wrap=True)


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()
