"""The HTTP envelope: error bodies, request ids, body limits, malformed input, 500s, 503s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tgfleet.app import create_app

LOGIN = "/api/v1/auth/login"


class TestErrors:
    async def test_error_body_and_request_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/api/v1/auth/me")
        assert response.status_code == 401
        assert set(response.json()) == {"error", "detail"}
        assert len(response.headers["X-Request-ID"]) == 32

    async def test_client_request_id_is_echoed_when_sane(self, client: httpx.AsyncClient) -> None:
        ok = await client.get("/livez", headers={"X-Request-ID": "trace-abc.123"})
        assert ok.headers["X-Request-ID"] == "trace-abc.123"
        hostile = await client.get(
            "/livez", headers={"X-Request-ID": "bad id\r\nx: y"[:7] + "<script>"}
        )
        assert hostile.headers["X-Request-ID"] != "bad id<script>"
        assert len(hostile.headers["X-Request-ID"]) == 32

    async def test_unknown_route_and_method(self, client: httpx.AsyncClient) -> None:
        missing = await client.get("/api/v1/nothing-here")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not_found"
        wrong = await client.delete(LOGIN)
        assert wrong.status_code == 405
        assert wrong.json()["error"] == "method_not_allowed"

    @pytest.mark.parametrize(
        ("content", "fragment"),
        [
            (b'{"username": "a", "password": ', "not valid JSON"),
            (b"\xff\xfe\x00garbage", "not valid JSON"),
            (b"[1, 2, 3]", "valid dictionary"),
            (b'"just a string"', "valid dictionary"),
        ],
    )
    async def test_malformed_json(
        self, client: httpx.AsyncClient, content: bytes, fragment: str
    ) -> None:
        response = await client.post(
            LOGIN, content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["error"] in {"invalid_json", "validation_error"}
        assert fragment in response.json()["detail"]

    async def test_unknown_fields_are_named(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            LOGIN, json={"username": "a", "password": "b", "remember_me": True}
        )
        assert response.status_code == 422
        assert "remember_me" in response.json()["detail"]
        assert "Extra inputs are not permitted" in response.json()["detail"]

    async def test_unexpected_exception_is_a_500_without_internals(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        @app.get("/explode")
        async def explode() -> None:
            raise RuntimeError("internal detail: /etc/secret at line 42")

        response = await client.get("/explode", headers={"X-Request-ID": "req-500"})
        assert response.status_code == 500
        assert response.json()["error"] == "internal_error"
        assert "req-500" in response.json()["detail"]
        assert "internal detail" not in response.text
        assert "Traceback" not in response.text
        assert response.headers["X-Request-ID"] == "req-500"


class TestBodyLimit:
    async def test_declared_length_over_the_limit(self, client: httpx.AsyncClient) -> None:
        body = b'{"username": "' + b"a" * (1024 * 1024) + b'", "password": "x"}'
        response = await client.post(
            LOGIN, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

    async def test_streamed_body_over_the_limit(self, tmp_path: Path, db_url: str) -> None:
        """A chunked body with no Content-Length is counted as it arrives."""
        app = create_app(make_settings(db_url, tmp_path / "data", max_body_bytes=2048))

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 1024

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    LOGIN, content=chunks(), headers={"Content-Type": "application/json"}
                )
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"

    async def test_small_limit_is_configurable(self, tmp_path: Path, db_url: str) -> None:
        app = create_app(make_settings(db_url, tmp_path / "data", max_body_bytes=1024))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(LOGIN, json={"username": "a" * 1100, "password": "x"})
        assert response.status_code == 413
        assert "1024 bytes" in response.json()["detail"]


class TestDatabaseDown:
    async def test_unreachable_database_is_a_503(self, tmp_path: Path) -> None:
        """PostgreSQL not answering: a clear 503, and /readyz says not ready."""
        settings = make_settings(
            "postgresql+asyncpg://postgres@127.0.0.1:9/none", tmp_path / "data"
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                login = await client.post(LOGIN, json={"username": "a", "password": "b"})
                ready = await client.get("/readyz")
                live = await client.get("/livez")
        assert login.status_code == 503
        assert login.json()["error"] == "database_unavailable"
        assert ready.status_code == 503
        assert live.status_code == 200


class TestOpenApi:
    async def test_docs_are_served(self, client: httpx.AsyncClient) -> None:
        docs = await client.get("/docs")
        assert docs.status_code == 200
        schema = (await client.get("/openapi.json")).json()
        assert "/api/v1/auth/login" in schema["paths"]
        login = schema["paths"]["/api/v1/auth/login"]["post"]
        assert "throttled" in login["description"]


class TestReadiness:
    async def test_ready_when_schema_is_current(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "pass",
            "checks": {"database": "pass", "migrations": "pass", "keyring": "pass"},
        }

    async def test_not_ready_when_schema_is_behind(
        self, client: httpx.AsyncClient, db_url: str
    ) -> None:
        import asyncio

        from tgfleet import migrations

        await asyncio.to_thread(migrations.downgrade, db_url, "base")
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["migrations"] == "fail"


class TestVaultKeyAtStartup:
    async def test_no_usable_key_stops_start_up_with_the_fix(
        self, tmp_path: Path, db_url: str
    ) -> None:
        from tgfleet.vault.exceptions import VaultKeyError

        app = create_app(make_settings(db_url, tmp_path / "data", vault_key=None))
        with pytest.raises(VaultKeyError, match="tgfleet vault init"):
            async with app.router.lifespan_context(app):
                pass
