"""The client's address behind reverse proxies we trust, and only those.

``X-Forwarded-For`` is believed only when the connection comes from one of
``TGFLEET_TRUSTED_PROXIES`` (empty by default: the peer is the client, whatever it sends).
From a trusted proxy the header is read right to left, skipping trusted hops: the first
untrusted hop is the client, since everything to its left was written by a party we do not
trust. A hop that is not a plain IP address (a name, a port, an IPv6 zone, a 100-character
string) makes the whole header worthless: the peer stays the client. So the address that
reaches the login throttle and the audit log is always a parseable IP of at most 39
characters, or the peer's own.

uvicorn's own proxy-header handling (which trusts loopback by default) is switched off by
``tgfleet run``; this middleware is the single place that decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TypeAlias

from starlette.types import ASGIApp, Receive, Scope, Send

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Hops examined at most, right to left; a longer chain of trusted proxies is not real.
MAX_HOPS = 32
_SCHEMES = {"http", "https"}


def parse_address(value: str) -> Address | None:
    """``value`` as a plain IP address (no port, no zone), or None."""
    text = value.strip()
    if not text or len(text) > 45:  # the longest textual IPv6 address
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None
        mapped = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 for trust and throttling
        if mapped is not None:
            return mapped
    return address


class TrustedProxies:
    """The networks whose forwarded headers are believed."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address, given the connection's ``peer`` and the X-Forwarded-For
        hops in order (left = farthest). Returns ``peer`` unless the header is usable."""
        if not self.trusts(parse_address(peer)):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        if not hops:
            return peer
        client = peer
        for hop in reversed(hops[-MAX_HOPS:]):
            address = parse_address(hop)
            if address is None:
                return peer  # unparseable: believe none of it
            client = str(address)
            if not self.trusts(address):
                return client
        # Every hop examined is trusted: the farthest one is the client (a proxy itself).
        return client


class ForwardedHeadersMiddleware:
    """Replace the ASGI ``client`` (and ``scheme``) with what a trusted proxy forwarded."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"} and self.trusted:
            client = scope.get("client")
            if client:
                self._rewrite(scope, str(client[0]))
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope, peer: str) -> None:
        if not self.trusted.trusts(parse_address(peer)):
            return
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
        host = self.trusted.client(peer, forwarded_for)
        if host != peer:
            scope["client"] = (host, 0)
        if proto in _SCHEMES:
            scheme = proto if scope["type"] == "http" else proto.replace("http", "ws")
            scope["scheme"] = scheme
