"""The services feed their Prometheus metrics: vault, audit, auth and the LLM call.

Counters are process-wide, so every test reads the samples it cares about before acting
and asserts what it added (:class:`Watch`), never an absolute value; gauges are asserted
right after the call that sets them. Real database (both backends), real services, the
local OpenAI-compatible server for the model.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.audit.test_service import TRIGGERS, append, execute
from tests.conftest import TEST_JWT_SECRET, TEST_VAULT_KEY, make_settings
from tests.factories import (
    DEFAULT_PASSWORD,
    Credentials,
    create_user,
    telethon_file,
    telethon_string,
    user_with_role,
)
from tests.fakes.openai_server import FakeChatServer
from tests.playbook.test_engine import ALICE, LLM_RULE, Clock, message, one_rule
from tests.vault.test_endpoints import sql
from tests.vault.test_rotation import fill
from tgfleet.audit import service as audit_service
from tgfleet.audit.exceptions import AuditWriteFailed
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.service import Security
from tgfleet.config import Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import ApiToken
from tgfleet.playbook.engine import LlmConfig, ReplyEngine
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.exceptions import SessionNotFound
from tgfleet.vault.formats import SessionFormat
from tgfleet.vault.keyring import init_key_file

CONTEXT = AuditContext(actor="cli:test")

Series = tuple[str, dict[str, str]]


def _value(series: Series) -> float:
    name, labels = series
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Watch:
    """Samples of the default registry read now, to be compared with later."""

    def __init__(self, **series: Series) -> None:
        self._series = series
        self._start = {key: _value(spec) for key, spec in series.items()}

    def delta(self) -> dict[str, float]:
        """How much each watched sample grew since the watch began."""
        return {key: _value(spec) - self._start[key] for key, spec in self._series.items()}


def imports(fmt: str, outcome: str) -> Series:
    return ("tgfleet_vault_imports_total", {"format": fmt, "outcome": outcome})


def outcome_of(name: str, outcome: str) -> Series:
    return (name, {"outcome": outcome})


def plain(name: str) -> Series:
    return (name, {})


# ------------------------------------------------------------------------------ vault


@pytest.fixture
def vault(app: FastAPI) -> vault_service.Vault:
    loaded: vault_service.Vault = app.state.vault
    return loaded


def strings(seeds: range) -> list[Entry]:
    return [Entry(name=f"s{seed}.txt", data=telethon_string(seed).encode()) for seed in seeds]


class TestVaultImports:
    async def test_each_file_counts_once_by_format_and_outcome(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        tmp_path: Path,
    ) -> None:
        """Three string sessions and a session file import as ok under their formats; a
        garbage file is rejected as unknown, a copy of an imported key as its format."""
        watch = Watch(
            strings_ok=imports("telethon-string", "ok"),
            file_ok=imports("telethon", "ok"),
            garbage=imports("unknown", "rejected"),
            duplicate=imports("telethon-string", "rejected"),
            failed=imports("telethon-string", "failed"),
        )
        entries = [
            *strings(range(3)),
            Entry(name="acct.session", data=telethon_file(tmp_path, 3).read_bytes()),
            Entry(name="garbage.txt", data=b"not a session"),
            Entry(name="copy.txt", data=telethon_string(1).encode()),
        ]
        results = await vault_service.import_entries(sessionmaker, vault, CONTEXT, entries)
        assert [r.ok for r in results] == [True, True, True, True, False, False]
        assert watch.delta() == {
            "strings_ok": 3,
            "file_ok": 1,
            "garbage": 1,
            "duplicate": 1,
            "failed": 0,
        }

    async def test_chunks_count_every_file_once(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """Small chunks, and a chunk redone file by file, still count each file once."""
        watch = Watch(ok=imports("telethon-string", "ok"))
        await vault_service.import_entries(
            sessionmaker, vault, CONTEXT, strings(range(10, 17)), chunk_size=3
        )
        assert watch.delta() == {"ok": 7}

    async def test_a_store_that_raises_counts_its_files_as_failed(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """With audit inserts failing in the database nothing is imported, and every file of
        the chunk counts as failed (not ok, not rejected)."""
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)
        watch = Watch(
            ok=imports("telethon-string", "ok"),
            failed=imports("telethon-string", "failed"),
            unknown=imports("unknown", "failed"),
        )
        entries = [*strings(range(20, 22)), Entry(name="bad.txt", data=b"nope")]
        with pytest.raises(AuditWriteFailed):
            await vault_service.import_entries(sessionmaker, vault, CONTEXT, entries)
        assert watch.delta() == {"ok": 0, "failed": 2, "unknown": 1}

    async def test_replace_counts_as_an_import(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        (imported,) = await fill(sessionmaker, vault, 1)
        assert imported.account_id is not None
        watch = Watch(ok=imports("telethon-string", "ok"), bad=imports("unknown", "rejected"))
        await vault_service.replace_session(
            sessionmaker, vault, CONTEXT, imported.account_id, strings(range(30, 31))[0]
        )
        with pytest.raises(AppError):
            await vault_service.replace_session(
                sessionmaker, vault, CONTEXT, imported.account_id, Entry("x.txt", b"nope")
            )
        assert watch.delta() == {"ok": 1, "bad": 1}


class TestVaultDecryptAndExport:
    async def test_decrypt_many_counts_each_secret_and_times_the_batch(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """Four secrets, one of them tampered: three ok, one failed, one observation."""
        results = await fill(sessionmaker, vault, 4)
        ids = [r.account_id for r in results if r.account_id is not None]
        await sql(
            sessionmaker,
            "UPDATE session_secret SET nonce = :n WHERE account_id = :a",
            n=b"\x00" * 12,
            a=ids[0].hex,
        )
        watch = Watch(
            ok=outcome_of("tgfleet_vault_decrypts_total", "ok"),
            failed=outcome_of("tgfleet_vault_decrypts_total", "failed"),
            batches=plain("tgfleet_vault_decrypt_duration_seconds_count"),
        )
        async with unit_of_work(sessionmaker) as session:
            decrypted = await vault_service.decrypt_many(
                session, vault, CONTEXT, ids, purpose="test"
            )
        assert sum(isinstance(v, vault_service.Decrypted) for v in decrypted.values()) == 3
        assert watch.delta() == {"ok": 3, "failed": 1, "batches": 1}

    async def test_a_secret_refused_without_a_try_is_not_a_decrypt(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """An account with no secret is answered without decrypting: no decrypt counted."""
        watch = Watch(
            ok=outcome_of("tgfleet_vault_decrypts_total", "ok"),
            failed=outcome_of("tgfleet_vault_decrypts_total", "failed"),
        )
        async with unit_of_work(sessionmaker) as session:
            decrypted = await vault_service.decrypt_many(
                session, vault, CONTEXT, [uuid.uuid4()], purpose="test"
            )
        assert all(isinstance(v, SessionNotFound) for v in decrypted.values())
        assert watch.delta() == {"ok": 0, "failed": 0}

    async def test_export_counts_ok_and_failed(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        (imported,) = await fill(sessionmaker, vault, 1)
        assert imported.account_id is not None
        watch = Watch(
            ok=outcome_of("tgfleet_vault_exports_total", "ok"),
            failed=outcome_of("tgfleet_vault_exports_total", "failed"),
        )
        async with unit_of_work(sessionmaker) as session:
            content = await vault_service.export(
                session,
                vault,
                CONTEXT,
                imported.account_id,
                fmt=SessionFormat.TELETHON_STRING,
                reason="metrics",
            )
        assert content
        with pytest.raises(AppError):
            async with unit_of_work(sessionmaker) as session:
                await vault_service.export(
                    session,
                    vault,
                    CONTEXT,
                    uuid.uuid4(),
                    fmt=SessionFormat.TELETHON_STRING,
                    reason="metrics",
                )
        assert watch.delta() == {"ok": 1, "failed": 1}


@pytest.fixture
def file_settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for a key-file keyring (the one a rotation adds keys to)."""
    settings = make_settings(db_url, tmp_path / "keyfile", vault_key=None)
    settings.data_dir.mkdir(mode=0o700)
    init_key_file(settings.effective_vault_key_file)
    return settings


@pytest.fixture
async def maker(file_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(file_settings.effective_database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()


class TestVaultKeys:
    async def test_rotation_counts_the_run_and_its_rewrapped_keys(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A key-file rotation of five secrets: one ok run, five data keys re-wrapped, and
        one KEK loaded at the end (the old one is retired)."""
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        assert _value(plain("tgfleet_vault_keys_loaded")) == 1
        await fill(maker, vault, 5)
        watch = Watch(
            ok=outcome_of("tgfleet_vault_rotations_total", "ok"),
            failed=outcome_of("tgfleet_vault_rotations_total", "failed"),
            rewrapped=plain("tgfleet_vault_rewrapped_secrets_total"),
        )
        report = await vault_service.rotate(maker, vault, CONTEXT, batch_size=2)
        assert report.rewrapped == 5
        assert watch.delta() == {"ok": 1, "failed": 0, "rewrapped": 5}
        assert _value(plain("tgfleet_vault_keys_loaded")) == 1

    async def test_rotation_leaving_secrets_behind_is_a_failed_run(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        db_url: str,
        tmp_path: Path,
    ) -> None:
        """A process whose keyring lacks the KEK of two secrets re-wraps nothing: the run
        counts as failed (and on PostgreSQL its 18-character final state now fits)."""
        await fill(sessionmaker, vault, 2)
        other_key = base64.b64encode(b"\x07" * 32).decode()
        other = await asyncio.to_thread(
            vault_service.Vault.load,
            make_settings(db_url, tmp_path / "other", vault_key=SecretStr(other_key)),
        )
        watch = Watch(
            ok=outcome_of("tgfleet_vault_rotations_total", "ok"),
            failed=outcome_of("tgfleet_vault_rotations_total", "failed"),
            rewrapped=plain("tgfleet_vault_rewrapped_secrets_total"),
        )
        report = await vault_service.rotate(sessionmaker, other, CONTEXT)
        assert (report.rewrapped, report.failed) == (0, 2)
        assert watch.delta() == {"ok": 0, "failed": 1, "rewrapped": 0}

    async def test_loading_a_keyring_sets_the_number_of_keys(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """An environment key with one previous key is two KEKs loaded."""
        previous = base64.b64encode(b"\x09" * 32).decode()
        settings = make_settings(
            db_url,
            tmp_path / "env",
            vault_key=SecretStr(TEST_VAULT_KEY),
            vault_previous_keys=SecretStr(previous),
        )
        await asyncio.to_thread(vault_service.Vault.load, settings)
        assert _value(plain("tgfleet_vault_keys_loaded")) == 2


# ------------------------------------------------------------------------------ audit


class TestAudit:
    async def test_each_appended_record_counts_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Two single appends and a batch of three: five records, three timed appends."""
        watch = Watch(
            writes=plain("tgfleet_audit_writes_total"),
            failures=plain("tgfleet_audit_write_failures_total"),
            appends=plain("tgfleet_audit_write_duration_seconds_count"),
        )
        await append(sessionmaker, 2)
        async with unit_of_work(sessionmaker) as session:
            await audit_service.record_many(
                session,
                CONTEXT,
                [audit_service.AuditEntry(action="test.batch", target=f"t:{i}") for i in range(3)],
            )
            await audit_service.record_many(session, CONTEXT, [])  # nothing to append
        assert watch.delta() == {"writes": 5, "failures": 0, "appends": 3}

    async def test_a_failed_append_counts_a_failure_and_no_write(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A trigger refusing audit inserts makes the append raise: one failure, no write."""
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)
        watch = Watch(
            writes=plain("tgfleet_audit_writes_total"),
            failures=plain("tgfleet_audit_write_failures_total"),
            appends=plain("tgfleet_audit_write_duration_seconds_count"),
        )
        with pytest.raises(AuditWriteFailed):
            await append(sessionmaker, 1)
        assert watch.delta() == {"writes": 0, "failures": 1, "appends": 1}


# ------------------------------------------------------------------------------ auth

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"


def logins() -> Watch:
    return Watch(
        success=outcome_of("tgfleet_logins_total", "success"),
        failure=outcome_of("tgfleet_logins_total", "failure"),
        throttled=outcome_of("tgfleet_logins_total", "throttled"),
        throttles=plain("tgfleet_login_throttles_total"),
    )


REASONS = (
    "missing_credentials",
    "invalid_token",
    "expired_token",
    "stale_token",
    "disabled_user",
    "forbidden",
    "wrong_password",
)


def denials() -> Watch:
    return Watch(**{r: ("tgfleet_auth_denied_total", {"reason": r}) for r in REASONS})


def denied(**expected: float) -> dict[str, float]:
    return {reason: expected.get(reason, 0) for reason in REASONS}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestLogins:
    async def test_success_failure_and_disabled(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        """A right password is a success; a wrong one, an unknown name and a disabled
        user are failures."""
        await create_user(sessionmaker, security, username="gone", role="viewer")
        await client.post("/api/v1/users/gone/disable", headers=admin.headers)
        watch = logins()
        attempts = [
            ("root", DEFAULT_PASSWORD, 200),
            ("root", "wrong wrong wrong", 401),
            ("nobody", "wrong wrong wrong", 401),
            ("gone", DEFAULT_PASSWORD, 403),
        ]
        for username, password, status in attempts:
            response = await client.post(LOGIN, json={"username": username, "password": password})
            assert response.status_code == status, response.text
        assert watch.delta() == {"success": 1, "failure": 3, "throttled": 0, "throttles": 0}

    async def test_throttled_login(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        """Five failures, then two attempts refused by the throttle (the right password
        among them): five failures and two throttled logins."""
        watch = logins()
        for _ in range(5):
            await client.post(LOGIN, json={"username": "root", "password": "bad-bad-bad"})
        for password in (DEFAULT_PASSWORD, "bad-bad-bad"):
            response = await client.post(LOGIN, json={"username": "root", "password": password})
            assert response.status_code == 429
        assert watch.delta() == {"success": 0, "failure": 5, "throttled": 2, "throttles": 2}


class TestAuthDenied:
    async def test_missing_and_invalid_credentials(self, client: httpx.AsyncClient) -> None:
        watch = denials()
        for headers in ({}, {"Authorization": "Basic eDp5"}):
            assert (await client.get(ME, headers=headers)).status_code == 401
        assert (await client.get(ME, headers=bearer("not.a.jwt"))).status_code == 401
        assert (await client.get(ME, headers=bearer("tgf_unknown"))).status_code == 401
        assert watch.delta() == denied(missing_credentials=2, invalid_token=2)

    async def test_expired_tokens(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
    ) -> None:
        """An expired JWT and an expired API token are both expired_token."""
        claims = jwt.decode(admin.token, TEST_JWT_SECRET, algorithms=["HS256"])
        past = datetime.now(UTC) - timedelta(hours=1)
        expired_jwt = jwt.encode(
            claims | {"iat": int(past.timestamp()) - 60, "exp": int(past.timestamp())},
            TEST_JWT_SECRET,
            algorithm="HS256",
        )
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "ci"}, headers=admin.headers
        )
        assert created.status_code == 201, created.text
        async with unit_of_work(sessionmaker) as session:
            await session.execute(update(ApiToken).values(expires_at=past))
        watch = denials()
        assert (await client.get(ME, headers=bearer(expired_jwt))).status_code == 401
        assert (await client.get(ME, headers=bearer(created.json()["token"]))).status_code == 401
        assert watch.delta() == denied(expired_token=2)

    async def test_disabled_user_and_stale_token(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        """A disabled user's JWT is disabled_user; a JWT from before a password change is
        stale_token."""
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        await asyncio.sleep(1.05)  # iat has one-second resolution
        changed = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "a brand new passphrase"},
            headers=admin.headers,
        )
        assert changed.status_code == 204
        fresh = await client.post(
            LOGIN, json={"username": "root", "password": "a brand new passphrase"}
        )
        fresh_headers = bearer(fresh.json()["access_token"])
        disabled = await client.post(
            f"/api/v1/users/{viewer.username}/disable", headers=fresh_headers
        )
        assert disabled.status_code == 200, disabled.text
        watch = denials()
        assert (await client.get(ME, headers=viewer.headers)).status_code == 401
        assert (await client.get(ME, headers=admin.headers)).status_code == 401
        assert watch.delta() == denied(disabled_user=1, stale_token=1)

    async def test_forbidden_and_wrong_password(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        """A viewer creating a user and an API token changing a password are forbidden; a
        wrong current password is wrong_password. Each refused request counts once."""
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "ci"}, headers=admin.headers
        )
        api_token = bearer(created.json()["token"])
        watch = denials()
        refused = await client.post(
            "/api/v1/users", json={"username": "x", "role": "admin"}, headers=viewer.headers
        )
        assert refused.status_code == 403
        by_token = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "an attacker's choice"},
            headers=api_token,
        )
        assert by_token.status_code == 403
        wrong = await client.post(
            "/api/v1/auth/password",
            json={"current_password": "not-the-password", "new_password": "a brand new one"},
            headers=admin.headers,
        )
        assert wrong.status_code == 403
        assert watch.delta() == denied(forbidden=2, wrong_password=1)


# ------------------------------------------------------------------------------ LLM


def llm_calls() -> Watch:
    return Watch(
        **{
            outcome: outcome_of("tgfleet_llm_requests_total", outcome)
            for outcome in ("ok", "llm_timeout", "llm_http_4xx", "llm_http_5xx", "llm_unreachable")
        },
        timed=plain("tgfleet_llm_request_duration_seconds_count"),
    )


def calls(**expected: float) -> dict[str, float]:
    zero = dict.fromkeys(
        ("ok", "llm_timeout", "llm_http_4xx", "llm_http_5xx", "llm_unreachable", "timed"), 0.0
    )
    return zero | expected


async def ask(base_url: str) -> str | None:
    """One message through an engine whose rule asks the model; the fallback reason."""
    engine = ReplyEngine(LlmConfig(base_url=base_url, model="m", timeout_seconds=5), clock=Clock())
    try:
        outcome = await engine.respond(
            one_rule("{min_length: 1}", reply=LLM_RULE), message(), ALICE
        )
    finally:
        await engine.aclose()
    return outcome.fallback_reason


class TestLlm:
    async def test_an_answer_is_ok(self) -> None:
        watch = llm_calls()
        async with FakeChatServer(reply="Prices start at 5 EUR.") as llm:
            assert await ask(llm.base_url) is None
        assert watch.delta() == calls(ok=1, timed=1)

    @pytest.mark.parametrize(
        ("status", "delay", "reason", "label"),
        [
            (503, 0.0, "llm_http_503", "llm_http_5xx"),
            (500, 0.0, "llm_http_500", "llm_http_5xx"),
            (429, 0.0, "llm_http_429", "llm_http_4xx"),
            (200, 2.0, "llm_timeout", "llm_timeout"),
        ],
    )
    async def test_a_failed_call_counts_its_reason_with_the_http_class(
        self, status: int, delay: float, reason: str, label: str
    ) -> None:
        """The fallback keeps the exact reason; the label keeps only the status class."""
        watch = llm_calls()
        async with FakeChatServer(status=status) as llm:
            llm.delay = delay
            assert await ask(llm.base_url) == reason
        assert watch.delta() == calls(**{label: 1, "timed": 1})

    async def test_unreachable_and_not_configured(self) -> None:
        """A closed port is a call that failed; no LLM configured is no call at all."""
        async with FakeChatServer() as llm:
            base_url = llm.base_url
        watch = llm_calls()
        assert await ask(base_url) == "llm_unreachable"
        engine = ReplyEngine(None, clock=Clock())
        try:
            outcome = await engine.respond(
                one_rule("{min_length: 1}", reply=LLM_RULE), message(), ALICE
            )
        finally:
            await engine.aclose()
        assert outcome.fallback_reason == "llm_not_configured"
        assert watch.delta() == calls(llm_unreachable=1, timed=1)
