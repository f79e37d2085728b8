"""A schema ahead of the code runs, one behind it refuses (expand/contract, docs/deploy.md
"Upgrades and rollback"): `tgfleet.migrations.schema_state` on both databases, ``tgfleet db``
and ``tgfleet worker`` as processes, and the worker's own readiness probe.

"Ahead" is made as the next release would make it: an expand migration (a nullable column
added to ``account``) recorded under a revision this code does not ship. "Contracted" is
that plus the ``schema_floor`` row a contracting migration writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.cli._process import serving, tgfleet, tgfleet_env
from tests.harness import PROBES
from tests.migration_steps import revisions
from tgfleet import migrations
from tgfleet.kit.db import create_engine
from tgfleet.migrations import Fit

FUTURE = "9999_future_expand"


async def _execute(db_url: str, *statements: str) -> None:
    engine = create_engine(db_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def make_ahead(db_url: str) -> None:
    """What the next release's expand migration leaves: a new nullable column, its revision."""
    await _execute(
        db_url,
        "ALTER TABLE account ADD COLUMN future_note VARCHAR(50)",
        f"UPDATE alembic_version SET version_num = '{FUTURE}'",
    )


async def make_contracted(db_url: str) -> None:
    """Ahead, and a contracting migration's floor: code must know ``FUTURE`` to run."""
    await make_ahead(db_url)
    await _execute(
        db_url,
        "CREATE TABLE schema_floor (revision VARCHAR(64) NOT NULL)",
        f"INSERT INTO schema_floor (revision) VALUES ('{FUTURE}')",
    )


async def test_the_schema_state_says_where_the_database_is(db_url: str) -> None:
    """Head: current. One migration down: behind. A revision this code does not ship:
    ahead (also with a floor this code knows). A floor it does not know: contracted."""
    assert (await migrations.schema_state(db_url)).fit is Fit.CURRENT
    await asyncio.to_thread(migrations.downgrade, db_url, revisions()[-2])
    behind = await migrations.schema_state(db_url)
    assert (behind.fit, behind.revision) == (Fit.BEHIND, revisions()[-2])
    assert "run `tgfleet db upgrade` first" in behind.describe()
    await asyncio.to_thread(migrations.upgrade, db_url)
    await make_ahead(db_url)
    ahead = await migrations.schema_state(db_url)
    assert (ahead.fit, ahead.revision, ahead.floor) == (Fit.AHEAD, FUTURE, None)
    await _execute(
        db_url,
        "CREATE TABLE schema_floor (revision VARCHAR(64) NOT NULL)",
        f"INSERT INTO schema_floor (revision) VALUES ('{revisions()[0]}')",
    )
    assert (await migrations.schema_state(db_url)).fit is Fit.AHEAD
    await _execute(db_url, f"UPDATE schema_floor SET revision = '{FUTURE}'")
    contracted = await migrations.schema_state(db_url)
    assert (contracted.fit, contracted.floor) == (Fit.CONTRACTED, FUTURE)
    assert "was contracted" in contracted.describe()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_db_commands_leave_a_schema_ahead_alone(db_url: str, tmp_path: Path) -> None:
    """On a schema ahead: ``db current`` exits 0 and says so, ``db upgrade`` changes nothing
    and exits 0 (an older image's migration job must not fail a rollback). Contracted past
    this code: ``db upgrade`` exits 2 with the reason, ``db current`` 1."""
    env = tgfleet_env(db_url, tmp_path / "data")
    await make_ahead(db_url)
    current = tgfleet(env, "db", "current")
    assert current.returncode == 0, current.stderr
    assert f"database: {FUTURE}" in current.stdout
    assert "ahead of this release's head" in current.stdout
    upgraded = tgfleet(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"database at revision {FUTURE}" in upgraded.stdout
    assert (await migrations.schema_state(db_url)).revision == FUTURE
    await _execute(
        db_url,
        "CREATE TABLE schema_floor (revision VARCHAR(64) NOT NULL)",
        f"INSERT INTO schema_floor (revision) VALUES ('{FUTURE}')",
    )
    refused = tgfleet(env, "db", "upgrade")
    assert refused.returncode == 2
    assert "was contracted" in refused.stderr
    assert tgfleet(env, "db", "current").returncode == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.timeout(120)
class TestWorkerGate:
    def _env(self, db_url: str, tmp_path: Path) -> dict[str, str]:
        return tgfleet_env(db_url, tmp_path / "data", TGFLEET_WORKER_METRICS_PORT="0")

    async def test_behind_or_contracted_is_refused(self, db_url: str, tmp_path: Path) -> None:
        """A schema behind the code: one line, exit 2, naming both revisions. A schema
        contracted past the code: the same."""
        env = self._env(db_url, tmp_path)
        await asyncio.to_thread(migrations.downgrade, db_url, revisions()[-2])
        behind = tgfleet(env, "worker", "--id", "w1")
        assert behind.returncode == 2
        expected = (
            f"error: the database is at revision {revisions()[-2]}, this release expects "
            f"{migrations.head_revision()}: run `tgfleet db upgrade` first"
        )
        assert behind.stderr.strip().splitlines() == [expected]
        await asyncio.to_thread(migrations.upgrade, db_url)
        await make_contracted(db_url)
        contracted = tgfleet(env, "worker", "--id", "w1")
        assert contracted.returncode == 2
        assert "was contracted" in contracted.stderr

    async def test_ahead_runs_and_is_ready(self, db_url: str, tmp_path: Path) -> None:
        """A schema ahead of the code: the worker starts, says the schema is ahead, and its
        /readyz passes; /health reports the migrations check as a warning naming both."""
        await make_ahead(db_url)
        with serving(self._env(db_url, tmp_path), tmp_path / "w.log", "worker", "--id", "w1") as w:
            line = w.wait_for_line("probes on")
            match = PROBES.search(line)
            assert match is not None, line
            assert "ahead of this release's head" in " ".join(w.lines)
            base = f"http://127.0.0.1:{match[1]}"
            async with httpx.AsyncClient(timeout=10) as http:
                ready = await http.get(f"{base}/readyz")
                health = (await http.get(f"{base}/health")).json()
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["migrations"] == "pass"
        [check] = health["checks"]["database:migrations"]
        assert check["status"] == "warn"
        assert check["observedValue"] == FUTURE
        assert migrations.head_revision() in check["output"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_db_downgrade_takes_the_schema_back(db_url: str, tmp_path: Path) -> None:
    """``db downgrade REVISION`` (rollback to a release that cannot run on the newer schema)
    leaves the database at that revision; this release then calls it behind."""
    env = tgfleet_env(db_url, tmp_path / "data")
    previous = revisions()[-2]
    done = tgfleet(env, "db", "downgrade", previous)
    assert done.returncode == 0, done.stderr
    assert f"database at revision {previous}" in done.stdout
    state = await migrations.schema_state(db_url)
    assert (state.revision, state.fit) == (previous, Fit.BEHIND)
