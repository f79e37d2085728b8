"""The vault page: the keyring and secrets by state as the API's status has them, the
tampered secrets with the way back, and a rotation started from the page whose progress
streams over SSE to 100 % — through the real app (and a real uvicorn for the stream) on
both databases, with a key-file keyring (the one a rotation adds keys to)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.console.conftest import HTML, Browser, browser_for, csrf_of, sign_in
from tests.console.test_account_page import shown
from tests.console.test_live import messages
from tests.factories import DEFAULT_PASSWORD, Credentials, audits, create_user, telethon_string
from tgfleet.app import create_app
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.service import Security
from tgfleet.config import Settings
from tgfleet.console.rotation import runner_of
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.keyfile import key_file_lock
from tgfleet.models import SecretState, SessionSecret, VaultRotation
from tgfleet.sandbox.control_server import ControlServer
from tgfleet.vault import service as vault_service
from tgfleet.vault.exceptions import VaultKeyError
from tgfleet.vault.keyring import init_key_file
from tgfleet.vault.repository import rotation_lock
from tgfleet.vault.rotation import ROTATION_LOCK_FILE

WAIT = 30.0
_PERCENT = re.compile(r'data-testid="rotation-percent">(\d+) %<')


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """A key-file keyring (rotation adds a KEK to it and retires the old one)."""
    value = make_settings(db_url, tmp_path / "data", vault_key=None)
    value.data_dir.mkdir(mode=0o700)
    init_key_file(value.effective_vault_key_file)
    return value


async def import_sessions(client: httpx.AsyncClient, admin: Credentials, count: int) -> list[str]:
    ids: list[str] = []
    for seed in range(count):
        response = await client.post(
            "/api/v1/accounts/import",
            content=telethon_string(seed + 1).encode(),
            params={"name": f"v{seed}.txt", "label": f"vault-{seed}"},
            headers=admin.headers | {"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
        ids.append(response.json()["results"][0]["account_id"])
    return ids


async def ada_of(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> Browser:
    return await browser_for(client, sessionmaker, security, "admin", "ada")


class TestStatus:
    async def test_the_page_shows_the_apis_status_and_the_tampered_secret(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """KEKs with their state and counts as GET /api/v1/vault/status; a secret marked
        tampered is counted, listed by its label and linked to its account's re-import."""
        ids = await import_sessions(client, admin, 3)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                update(SessionSecret)
                .where(SessionSecret.account_id == uuid.UUID(ids[1]))
                .values(state=SecretState.TAMPERED)
            )
        status = (await client.get("/api/v1/vault/status", headers=admin.headers)).json()
        ada = await ada_of(client, sessionmaker, security)
        page = await ada.http.get("/vault", headers=HTML)
        assert page.status_code == 200
        assert shown(page.text, "active-kek") == status["active_kek_id"]
        assert shown(page.text, "vault-source") == "file"
        (kek,) = status["keks"]
        assert f'<tr data-kek="{kek["id"]}">' in page.text
        assert shown(page.text, "kek-secrets") == "3"
        assert shown(page.text, "secrets-active") == "2"
        assert shown(page.text, "secrets-tampered") == "1"
        assert shown(page.text, "secrets-rewrap") == "0"
        assert f'<tr data-account="{ids[1]}">' in page.text
        assert f'href="/accounts/{ids[1]}#session"' in page.text
        assert "vault-1" in page.text
        assert 'data-testid="rotate-form"' in page.text
        await ada.http.aclose()

    async def test_read_only_roles_see_no_rotation_and_a_forged_post_is_refused(
        self,
        client: httpx.AsyncClient,
        operator: Browser,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """The auditor (vault:read) sees the page without the form, and its POST is 403
        and audited; the operator (no vault:read) has no Vault link and gets 403."""
        assert 'href="/vault"' not in (await operator.http.get("/", headers=HTML)).text
        assert (await operator.http.get("/vault", headers=HTML)).status_code == 403
        audrey = await browser_for(client, sessionmaker, security, "auditor", "audrey")
        page = await audrey.http.get("/vault", headers=HTML)
        assert page.status_code == 200
        assert 'href="/vault"' in page.text
        assert 'data-testid="rotate-form"' not in page.text
        forged = await audrey.post("/vault/rotate")
        assert forged.status_code == 403
        denied = [r.details for r in await audits(sessionmaker, "auth.denied")]
        assert {"permission": "vault:rotate", "role": "auditor"} in denied
        assert await audits(sessionmaker, "vault.rotate.start") == []
        await audrey.http.aclose()


class TestRotation:
    async def test_rotation_from_the_page_streams_progress_to_100_and_rewraps_all(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Credentials,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """Held at its start (the key file's lock), the rotation shows 0 % on the stream;
        released, the stream reaches 100 % with the result and ends with done; every secret
        is then under the new key, the old one retired, audited as the API's rotation. A
        second click while it runs starts nothing."""
        ids = await import_sessions(client, admin, 6)
        old = (await client.get("/api/v1/vault/status", headers=admin.headers)).json()[
            "active_kek_id"
        ]
        await create_user(
            sessionmaker, security, username="ada", role="admin", password=DEFAULT_PASSWORD
        )
        async with (
            ControlServer(app) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as web,
        ):
            assert (await sign_in(web, "ada")).status_code == 303
            csrf = csrf_of((await web.get("/vault", headers=HTML)).text)
            with ExitStack() as held:
                held.enter_context(
                    key_file_lock(settings.effective_vault_key_file, error=VaultKeyError)
                )
                started = await web.post("/vault/rotate", data={"csrf_token": csrf}, headers=HTML)
                assert started.status_code == 303
                again = await web.post("/vault/rotate", data={"csrf_token": csrf}, headers=HTML)
                assert again.status_code == 303
                async with web.stream("GET", "/vault/rotation/events") as stream:
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    events = messages(stream)
                    first = await anext(events)
                    assert first.event == "rotation"
                    assert 'data-state="running"' in first.data
                    assert _PERCENT.search(first.data).group(1) == "0"  # type: ignore[union-attr]
                    held.close()  # the rotation goes on
                    seen = [first]
                    async with asyncio.timeout(WAIT):
                        async for message in events:
                            seen.append(message)
                            if message.event == "done":
                                break
            assert seen[-1].event == "done"
            final = seen[-2]
            assert 'data-state="done"' in final.data
            assert _PERCENT.search(final.data).group(1) == "100"  # type: ignore[union-attr]
            percents = [int(m.group(1)) for m in (_PERCENT.search(s.data) for s in seen) if m]
            assert percents == sorted(percents)
            assert "6 re-wrapped, 0 failed" in final.data
            page = await web.get("/vault", headers=HTML)
            assert "6 re-wrapped, 0 failed" in shown(page.text, "rotation-result")
        status = (await client.get("/api/v1/vault/status", headers=admin.headers)).json()
        assert status["active_kek_id"] != old
        states = {k["id"]: (k["state"], k["secrets"]) for k in status["keks"]}
        assert states == {old: ("retired", 0), status["active_kek_id"]: ("active", len(ids))}
        (start,) = await audits(sessionmaker, "vault.rotate.start")
        (finish,) = await audits(sessionmaker, "vault.rotate.finish")
        assert start.actor == finish.actor == "user:ada"
        assert finish.details == {"rewrapped": 6, "failed": 0, "retired": [old]}

    async def test_a_rotation_running_elsewhere_is_named_and_nothing_changes(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Credentials,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """While another process holds the rotation (its lock), the page's rotation stops
        with the domain's message: no KEK added, nothing audited as started."""
        await import_sessions(client, admin, 2)
        before = (await client.get("/api/v1/vault/status", headers=admin.headers)).json()
        ada = await ada_of(client, sessionmaker, security)
        async with held_rotation(app, settings):
            started = await ada.post("/vault/rotate")
            assert started.status_code == 303
            stream = await ada.http.get("/vault/rotation/events")  # ends with the rotation
        assert "event: done" in stream.text
        page = await ada.http.get("/vault", headers=HTML)
        assert "another key rotation is running" in shown(page.text, "rotation-error")
        after = (await client.get("/api/v1/vault/status", headers=admin.headers)).json()
        assert after["keks"] == before["keks"]
        assert await audits(sessionmaker, "vault.rotate.start") == []
        await ada.http.aclose()


@asynccontextmanager
async def held_rotation(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The rotation lock as another process holds it: PostgreSQL's advisory lock on a
    connection of its own, or the flock on the data directory's file (SQLite)."""
    engine = app.state.engine
    if engine.dialect.name == "postgresql":
        async with rotation_lock(engine) as taken:
            assert taken
            yield
        return
    descriptor = os.open(settings.data_dir / ROTATION_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(descriptor)


async def test_a_rotation_still_running_is_cancelled_when_the_app_stops(
    settings: Settings,
) -> None:
    """The runner owns its task: the app's shutdown cancels a rotation that cannot get past
    its start (the key file's lock is held) and waits for it, nothing committed (no rotation
    row, no audit record); the next app's rotation runs to its end."""
    application = create_app(settings)
    with ExitStack() as held:
        held.enter_context(key_file_lock(settings.effective_vault_key_file, error=VaultKeyError))
        async with application.router.lifespan_context(application):
            runner = runner_of(application)
            maker = application.state.sessionmaker
            assert runner.start(maker, application.state.vault, AuditContext(actor="cli:test"))
            started = runner.running
        assert started
        assert not runner.running
        assert runner.progress is not None
        assert not runner.progress.finished
    again = create_app(settings)
    async with again.router.lifespan_context(again):
        maker = again.state.sessionmaker
        async with unit_of_work(maker, read_only=True) as session:
            assert (await session.execute(select(func.count(VaultRotation.id)))).scalar_one() == 0
        assert await audits(maker, "vault.rotate.start") == []
        report = await vault_service.rotate(
            maker, again.state.vault, AuditContext(actor="cli:test")
        )
        assert report.failed == 0
