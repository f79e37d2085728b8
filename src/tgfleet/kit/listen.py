"""Listening sockets bound before a server announces itself or changes anything.

uvicorn binds its port only after the app's start-up has run, so a busy port was found
after ``tgfleet run`` had created (and printed) an admin, and ended in uvicorn's
``sys.exit`` inside a task. Binding first turns a busy port into one clear error before
anything happens; the server is then handed the socket (``Server.serve(sockets=[sock])``).
"""

from __future__ import annotations

import os
import socket

from tgfleet.exceptions import ConfigError

#: uvicorn's default: connections that may queue while the app is still starting.
BACKLOG = 2048


class ListenError(ConfigError):
    """The address cannot be listened on (in use, not local, not permitted)."""


def open_listener(host: str, port: int, *, hint: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (port 0: a free one).

    ``hint`` says which setting or option picks another port; it ends the error's message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        # create_server's own message repeats the address: the errno's text alone.
        reason = (os.strerror(exc.errno) if exc.errno else type(exc).__name__).lower()
        msg = f"cannot listen on {format_address(host, port)}: {reason} ({hint})"
        raise ListenError(msg) from exc
    sock.set_inheritable(True)
    return sock


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bound_port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
