"""The client address behind proxies: X-Forwarded-For is believed from TGFLEET_TRUSTED_PROXIES
only, read right to left, and only when every hop read is a plain IP (both databases)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select
from starlette.types import Receive, Scope, Send

from tests.conftest import TEST_JWT_SECRET, TEST_VAULT_KEY, make_settings
from tgfleet.app import create_app
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.kit.proxy import ForwardedHeadersMiddleware, TrustedProxies, parse_address
from tgfleet.models import AuditRecord, LoginThrottle

LOGIN = "/api/v1/auth/login"
#: A forwarded "address" long enough to overflow the audit record's ip column (64).
LONG_VALUE = "x" * 100


def _trusted(*networks: str) -> TrustedProxies:
    return TrustedProxies(ipaddress.ip_network(network) for network in networks)


async def _login_records(db_url: str) -> list[tuple[str | None, str]]:
    """(ip, result) of every auth.login audit record, in order."""
    engine = create_engine(db_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            rows = await session.execute(
                select(AuditRecord.ip, AuditRecord.result)
                .where(AuditRecord.action == "auth.login")
                .order_by(AuditRecord.seq)
            )
            return [(ip, result) for ip, result in rows.all()]
    finally:
        await engine.dispose()


async def _throttle_keys(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            rows = await session.execute(select(LoginThrottle.key, LoginThrottle.failures))
            return {str(row.key): int(row.failures) for row in rows}
    finally:
        await engine.dispose()


class TestTrustedProxies:
    @pytest.mark.parametrize(
        ("peer", "header", "client"),
        [
            ("10.0.0.2", "203.0.113.9", "203.0.113.9"),
            # The right-most untrusted hop, never what the client wrote further left.
            ("10.0.0.2", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
            ("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
            # Every hop trusted: the farthest is the client (a proxy calling for itself).
            ("10.0.0.2", "10.0.0.5, 10.0.0.7", "10.0.0.5"),
            # Anything but a plain IP among the hops read: the header is ignored.
            ("10.0.0.2", LONG_VALUE, "10.0.0.2"),
            ("10.0.0.2", "203.0.113.9:443", "10.0.0.2"),
            ("10.0.0.2", "fe80::1%eth0", "10.0.0.2"),
            ("10.0.0.2", "example.org", "10.0.0.2"),
            ("10.0.0.2", "", "10.0.0.2"),
            ("10.0.0.2", "junk, 10.0.0.7", "10.0.0.2"),
            # A bad hop left of the client is never read.
            ("10.0.0.2", "junk, 203.0.113.9", "203.0.113.9"),
            # An IPv6 client; an IPv4-mapped one is its IPv4 address.
            ("10.0.0.2", "2001:db8::1", "2001:db8::1"),
            ("10.0.0.2", "::ffff:203.0.113.9", "203.0.113.9"),
            # Not from a trusted proxy: the peer, whatever the header says.
            ("198.51.100.1", "203.0.113.9", "198.51.100.1"),
            ("127.0.0.1", "203.0.113.9", "127.0.0.1"),
        ],
    )
    def test_client_address(self, peer: str, header: str, client: str) -> None:
        """The client is the right-most hop that is not a trusted proxy, when the peer is
        one and every hop read parses as an IP; otherwise the peer."""
        assert _trusted("10.0.0.0/24").client(peer, [header]) == client

    def test_several_headers_are_one_list(self) -> None:
        """Two X-Forwarded-For headers read as one list, in order."""
        trusted = _trusted("10.0.0.0/24")
        assert trusted.client("10.0.0.2", ["1.2.3.4", "203.0.113.9, 10.0.0.3"]) == "203.0.113.9"

    def test_nothing_is_trusted_by_default(self) -> None:
        """With no trusted proxies (the default), not even loopback is believed."""
        assert not TrustedProxies(())
        assert TrustedProxies(()).client("127.0.0.1", ["203.0.113.9"]) == "127.0.0.1"
        assert make_settings("sqlite+aiosqlite://", Path()).trusted_proxies == ()

    def test_parse_address_bounds_the_value(self) -> None:
        """Only plain IP addresses pass, at most the length of an IPv6 address."""
        assert parse_address(" 203.0.113.9 ") == ipaddress.ip_address("203.0.113.9")
        assert parse_address("1" * 100) is None
        assert parse_address("fe80::1%" + "x" * 30) is None

    def test_settings_parse_a_comma_separated_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """TGFLEET_TRUSTED_PROXIES takes addresses and CIDRs separated by commas; a network
        with host bits or a name is refused at start-up."""
        monkeypatch.setenv("TGFLEET_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1,::1")
        assert [str(n) for n in Settings().trusted_proxies] == [
            "10.0.0.0/8",
            "127.0.0.1/32",
            "::1/128",
        ]
        for bad in ("10.0.0.1/8", "proxy.internal"):
            monkeypatch.setenv("TGFLEET_TRUSTED_PROXIES", bad)
            with pytest.raises(ValidationError, match="trusted_proxies"):
                Settings()


@pytest.fixture
async def proxied_app(db_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The app behind a trusted proxy at 10.0.0.2."""
    settings = make_settings(db_url, tmp_path / "data", trusted_proxies=("10.0.0.2",))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


class TestBehindATrustedProxy:
    async def test_the_forwarded_address_is_throttled_and_audited(
        self, proxied_app: FastAPI, db_url: str
    ) -> None:
        """From the trusted proxy, failures count against the forwarded client: that client
        is throttled after five, another client behind the same proxy is not."""
        transport = httpx.ASGITransport(app=proxied_app, client=("10.0.0.2", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as proxy:

            async def attempt(index: int, forwarded: str) -> int:
                response = await proxy.post(
                    LOGIN,
                    json={"username": f"nobody{index}", "password": "wrong-wrong-wrong"},
                    headers={"X-Forwarded-For": forwarded},
                )
                return response.status_code

            for index in range(5):
                assert await attempt(index, "1.2.3.4, 203.0.113.9") == 401
            assert await attempt(5, "203.0.113.9") == 429
            assert await attempt(6, "203.0.113.10") == 401
        records = await _login_records(db_url)
        assert [ip for ip, _ in records] == ["203.0.113.9"] * 6 + ["203.0.113.10"]
        assert (await _throttle_keys(db_url))["ip:203.0.113.9"] == 5

    async def test_a_long_forwarded_value_is_a_counted_audited_failure(
        self, proxied_app: FastAPI, db_url: str
    ) -> None:
        """A 100-character X-Forwarded-For from the trusted proxy is ignored: the attempt is
        a 401 counted and audited against the proxy's address, not a 503."""
        transport = httpx.ASGITransport(app=proxied_app, client=("10.0.0.2", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as proxy:
            response = await proxy.post(
                LOGIN,
                json={"username": "nobody", "password": "wrong-wrong-wrong"},
                headers={"X-Forwarded-For": LONG_VALUE},
            )
        assert response.status_code == 401
        assert await _login_records(db_url) == [("10.0.0.2", "failure")]
        assert (await _throttle_keys(db_url))["ip:10.0.0.2"] == 1


class TestMiddleware:
    async def test_scheme_and_client_from_the_trusted_proxy_only(self) -> None:
        """X-Forwarded-Proto and -For rewrite the ASGI scope from the trusted proxy only."""
        seen: dict[str, object] = {}

        async def echo(scope: Scope, receive: Receive, send: Send) -> None:
            seen.update(scheme=scope["scheme"], client=scope["client"][0])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        wrapped = ForwardedHeadersMiddleware(echo, _trusted("10.0.0.2/32"))
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        for peer, scheme, client in (
            ("10.0.0.2", "https", "203.0.113.9"),
            ("198.51.100.1", "http", "198.51.100.1"),
        ):
            transport = httpx.ASGITransport(app=wrapped, client=(peer, 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/", headers=headers)).status_code == 204
            assert seen == {"scheme": scheme, "client": client}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(db_url: str, tmp_path: Path) -> Iterator[str]:
    """``tgfleet run --no-worker`` on a free loopback port, as an operator starts it, with
    TGFLEET_TRUSTED_PROXIES unset (the default); yields its base URL."""
    port = _free_port()
    env = {
        **os.environ,
        "TGFLEET_ENV": "test",
        "TGFLEET_DATABASE_URL": db_url,
        "TGFLEET_DATA_DIR": str(tmp_path / "data"),
        "TGFLEET_JWT_SECRET": TEST_JWT_SECRET,
        "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
        "TGFLEET_ARGON2_TIME_COST": "1",
        "TGFLEET_ARGON2_MEMORY_KIB": "1024",
        "TGFLEET_ARGON2_PARALLELISM": "1",
        "TGFLEET_TELEGRAM_DCS": "",
        "TGFLEET_ALERTING_ENABLED": "false",
    }
    env.pop("TGFLEET_TRUSTED_PROXIES", None)
    env.pop("FORWARDED_ALLOW_IPS", None)
    log = (tmp_path / "run.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tgfleet", "run", "--no-worker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "run.log").read_text()
            try:
                if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "tgfleet run did not answer within 60 s"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang is a failure anyway
            process.kill()
            process.wait()
        log.close()


class TestTgfleetRun:
    async def test_forged_forwarded_for_from_loopback_changes_nothing(
        self, served: str, db_url: str
    ) -> None:
        """Through the real server (uvicorn), a loopback client forging X-Forwarded-For is
        still throttled as 127.0.0.1: five failures under five forged addresses block the
        sixth. The 100-character forgery among them is a counted, audited 401, not a 503."""
        async with httpx.AsyncClient(base_url=served, timeout=30) as http:
            statuses = []
            for index, forged in enumerate(
                [LONG_VALUE, "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "::1"]
            ):
                response = await http.post(
                    LOGIN,
                    json={"username": f"nobody{index}", "password": "wrong-wrong-wrong"},
                    headers={"X-Forwarded-For": forged},
                )
                statuses.append(response.status_code)
        assert statuses == [401] * 5 + [429]
        records = await asyncio.wait_for(_login_records(db_url), timeout=30)
        assert records == [("127.0.0.1", "failure")] * 6
