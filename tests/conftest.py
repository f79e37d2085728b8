"""Shared fixtures: a real, migrated database per test, on SQLite and on PostgreSQL.

Every test that takes ``db_url`` (directly or through ``app``/``client``) runs once per
backend. The schema is built by the Alembic migrations from empty into a template once per
session; each test gets its own copy (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE``
on PostgreSQL), so tests are isolated and may commit.

PostgreSQL runs when ``TGFLEET_TEST_DATABASE_URL`` is set; without it those tests skip
with a visible reason, unless ``CI=true``, where its absence is an error.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, user_with_role
from tgfleet import migrations
from tgfleet.app import create_app
from tgfleet.audit import keys as audit_keys
from tgfleet.auth.service import Security
from tgfleet.config import Environment, Settings
from tgfleet.kit.db import create_engine, create_sessionmaker

PG_ENV = "TGFLEET_TEST_DATABASE_URL"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_JWT_SECRET = "test-secret-" + "x" * 60
TEST_VAULT_KEY = base64.b64encode(bytes(range(32))).decode()
TEST_AUDIT_KEY = base64.b64encode(bytes(range(32, 64))).decode()


@dataclass(frozen=True)
class Backend:
    name: str
    template: str  # SQLite: path of the template file; PostgreSQL: template database name
    admin_dsn: str | None = None  # PostgreSQL: where CREATE DATABASE is issued
    base_url: str | None = None


def _pg_url() -> str | None:
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if IN_CI:
        pytest.fail(f"CI=true but {PG_ENV} is not set: the PostgreSQL suite is mandatory in CI")
    return None


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite-template")
        path = folder / "template.db"
        migrations.upgrade(f"sqlite+aiosqlite:///{path}")
        yield Backend(name="sqlite", template=str(path))
        return
    url = _pg_url()
    if url is None:
        pytest.skip(f"PostgreSQL suite skipped: set {PG_ENV} (CI sets it and makes it mandatory)")
    admin_dsn = _asyncpg_dsn(url)
    template = f"tgfleet_tpl_{os.getpid()}"
    asyncio.run(_pg_exec(admin_dsn, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
    asyncio.run(_pg_exec(admin_dsn, f'CREATE DATABASE "{template}"'))
    migrations.upgrade(make_url(url).set(database=template).render_as_string(hide_password=False))
    yield Backend(name="postgres", template=template, admin_dsn=admin_dsn, base_url=url)
    asyncio.run(_pg_exec(admin_dsn, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))


async def _pg_exec(dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


_counter = itertools.count()


@asynccontextmanager
async def fresh_database(backend: Backend, folder: Path) -> AsyncIterator[str]:
    """A migrated copy of the backend's template (a file in ``folder`` on SQLite), dropped
    on exit; yields its URL."""
    if backend.name == "sqlite":
        path = folder / "tgfleet.db"
        shutil.copyfile(backend.template, path)
        path.chmod(0o600)
        yield f"sqlite+aiosqlite:///{path}"
        return
    assert backend.admin_dsn is not None
    assert backend.base_url is not None
    name = f"tgfleet_t_{os.getpid()}_{next(_counter)}"
    await _pg_exec(backend.admin_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{backend.template}"')
    try:
        yield make_url(backend.base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _pg_exec(backend.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_url(backend: Backend, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    async with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
async def maker(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test's database without an app (nothing else runs against it)."""
    engine = create_engine(db_url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def make_settings(db_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": Environment.TEST,
        "data_dir": data_dir,
        "database_url": db_url,
        "jwt_secret": SecretStr(TEST_JWT_SECRET),
        "vault_key": SecretStr(TEST_VAULT_KEY),
        "audit_key": SecretStr(TEST_AUDIT_KEY),
        # The checkpoint publisher polls the database: only the audit tests turn it on.
        "audit_checkpoints_enabled": False,
        # Cheap hashing keeps the suite fast; production defaults are tested separately.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 1024,
        "argon2_parallelism": 1,
        # No probe ever leaves loopback: tests that need the network monitor point it at
        # a local listener.
        "telegram_dcs": "",
        # The alert evaluator polls the database: only the alerting tests turn it on.
        "alerting_enabled": False,
        "login_throttle_threshold": 5,
        "login_throttle_base_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def audit_keyring() -> Iterator[audit_keys.AuditKeyring]:
    """The test audit key in this process, for tests that append records without an app
    (an app's start-up configures the same key from its settings)."""
    key = audit_keys.AuditKey(base64.b64decode(TEST_AUDIT_KEY), datetime.now(UTC))
    keyring = audit_keys.AuditKeyring(source="env", active=key, keys=[key])
    audit_keys.install(keyring)
    yield keyring
    audit_keys.install(None)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path / "data")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


@pytest.fixture
def security(app: FastAPI) -> Security:
    value: Security = app.state.security
    return value


@pytest.fixture
async def admin(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> Credentials:
    """A logged-in admin named ``root``."""
    return await user_with_role(client, sessionmaker, security, "admin", username="root")
