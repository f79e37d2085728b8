"""Tracebacks in the logs never carry local variables (secrets live in locals)."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from tgfleet.logging import configure_logging

PLANTED = "planted-secret-4f1d9c"


class TestUnhandledApiError:
    @pytest.mark.parametrize("json", [False, True], ids=["dev-console", "prod-json"])
    async def test_log_renders_no_locals(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        capfd: pytest.CaptureFixture[str],
        json: bool,
    ) -> None:
        """An unhandled error in a route, logged by the dev console renderer and by the
        production JSON one: the traceback is there (frame and exception), the value of a
        local that holds a secret is not, and rendering it is fast (rich's locals took
        seconds per error)."""

        async def explode() -> None:
            api_token = PLANTED  # what a handler holds in a local when it fails
            raise RuntimeError("boom " + str(len(api_token)))

        app.add_api_route("/test-explode", explode)
        configure_logging(level="INFO", json=json)
        try:
            started = time.monotonic()
            response = await client.get("/test-explode")
            elapsed = time.monotonic() - started
        finally:
            configure_logging(level="INFO", json=False)
        captured = capfd.readouterr()
        logs = captured.out + captured.err
        assert response.status_code == 500
        assert "http.unhandled" in logs
        assert "RuntimeError: boom 21" in logs
        assert "in explode" in logs
        assert PLANTED not in logs
        assert elapsed < 2.0
