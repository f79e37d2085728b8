"""Health routes and the HealthService on a real, migrated database (SQLite and PostgreSQL):
the document's shape and status codes, caching and single flight, time limits, a database
that goes away, workers and the fleet's online ratio from real rows, the Telegram check
from real probes, the keyring and the alert delivery record."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TEST_VAULT_KEY, make_settings
from tests.factories import make_fleet, register_worker, report_states
from tests.fakes.tcp_proxy import TcpProxy
from tests.health.conftest import black_hole, closed_port, listener, sample, serving
from tgfleet.config import Settings
from tgfleet.health.network import NetworkMonitor
from tgfleet.health.schemas import MEDIA_TYPE
from tgfleet.health.service import HealthService
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.files import write_private_file
from tgfleet.models import AccountState
from tgfleet.vault.keyring import init_key_file

POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

CHECKS = {
    "database:responseTime",
    "database:migrations",
    "vault:keyring",
    "disk:free",
    "workers:alive",
    "fleet:onlineRatio",
    "telegram:reachability",
    "alerting:lastDelivery",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
STATUS = "tgfleet_health_check_status"
DURATION_COUNT = "tgfleet_health_check_duration_seconds_count"
#: What a response may take beyond the check time limit (scheduling, the app around it).
MARGIN = 1.0


def _settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings whose disk thresholds cannot trip on a small CI disk, cache off."""
    values: dict[str, Any] = {
        "health_disk_warn_bytes": 0,
        "health_disk_fail_bytes": 0,
        "health_cache_seconds": 0,
    }
    values.update(overrides)
    return make_settings(db_url, tmp_path / "data", **values)


def _service(app: FastAPI, **kwargs: Any) -> HealthService:
    """A HealthService over the app's own engine, keys and settings, without a cache."""
    settings = app.state.settings.model_copy(update={"health_cache_seconds": 0})
    return HealthService(
        settings, app.state.engine, app.state.sessionmaker, app.state.vault, **kwargs
    )


def _check(document: dict[str, Any], name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = document["checks"][name]
    assert len(entries) == 1, entries
    return entries[0]


class TestDocument:
    @pytest.mark.timeout(30)
    async def test_the_document_follows_the_draft(self, db_url: str, tmp_path: Path) -> None:
        """application/health+json, no-store, every check keyed component:measurement, each
        entry with the draft's fields and an RFC 3339 time; warn is 200; /healthz is the
        same document; nothing secret in it."""
        async with serving(_settings(db_url, tmp_path, health_cache_seconds=30)) as (_, client):
            response = await client.get("/health")
            alias = await client.get("/healthz")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(MEDIA_TYPE)
        assert response.headers["cache-control"] == "no-store"
        document = response.json()
        assert alias.json() == document  # an alias, within the cache window
        assert set(document) == {"status", "version", "serviceId", "description", "checks"}
        assert set(document["checks"]) == CHECKS
        for name, entries in document["checks"].items():
            assert re.fullmatch(r"[a-z]+:[a-zA-Z]+", name)
            for entry in entries:
                assert entry["componentType"] in {"component", "datastore", "system"}
                assert entry["status"] in {"pass", "warn", "fail"}
                assert "observedValue" in entry
                assert RFC3339.match(entry["time"]), entry["time"]
                if entry["status"] != "pass":
                    assert entry["output"]
        # A fresh API-only process: everything passes but the workers check, which warns
        # (no account runtime in this process on SQLite, no registered worker on PostgreSQL).
        assert document["status"] == "warn"
        assert _check(document, "workers:alive")["status"] == "warn"
        for name in CHECKS - {"workers:alive"}:
            assert document["checks"][name][0]["status"] == "pass", name
        assert _check(document, "database:responseTime")["observedUnit"] == "ms"
        assert _check(document, "disk:free")["observedValue"] > 0
        assert _check(document, "vault:keyring")["observedValue"] == 1
        telegram = _check(document, "telegram:reachability")
        assert telegram["output"] == "network monitor off (TGFLEET_TELEGRAM_DCS is empty)"
        delivery = _check(document, "alerting:lastDelivery")
        assert delivery["observedValue"] is None
        assert delivery["output"] == "no notification sent yet"
        database = make_url(db_url).database
        assert database is not None
        assert database not in response.text
        assert TEST_VAULT_KEY not in response.text
        assert sample(STATUS, check="workers:alive") == 0.5
        assert sample(STATUS, check="database:responseTime") == 1.0

    @pytest.mark.timeout(30)
    async def test_liveness_and_readiness(self, db_url: str, tmp_path: Path) -> None:
        """/livez passes with nothing else; /readyz lists its checks, all passing."""
        async with serving(_settings(db_url, tmp_path)) as (_, client):
            live = await client.get("/livez")
            ready = await client.get("/readyz")
        assert (live.status_code, live.json()) == (200, {"status": "pass"})
        assert live.headers["cache-control"] == "no-store"
        assert ready.status_code == 200
        assert ready.headers["content-type"].startswith(MEDIA_TYPE)
        assert ready.json() == {
            "status": "pass",
            "checks": {"database": "pass", "migrations": "pass", "keyring": "pass"},
        }

    @pytest.mark.timeout(30)
    async def test_a_failing_check_makes_the_document_fail_with_503(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """Free space under the fail threshold fails disk:free, hence the document: 503."""
        settings = _settings(
            db_url, tmp_path, health_disk_warn_bytes=2**62, health_disk_fail_bytes=2**61
        )
        async with serving(settings) as (_, client):
            response = await client.get("/health")
        assert response.status_code == 503
        document = response.json()
        assert document["status"] == "fail"
        disk = _check(document, "disk:free")
        assert disk["status"] == "fail"
        assert "fail below" in disk["output"]
        assert sample(STATUS, check="disk:free") == 0.0


class TestTimings:
    async def test_each_check_is_timed_beside_the_document(self, app: FastAPI) -> None:
        """health_timed: the document health() gives (same cache) and, for every check in
        it, how long it took (seconds, within the check time limit plus a margin)."""
        service = _service(app)
        try:
            document, seconds = await service.health_timed()
            assert set(document["checks"]) == CHECKS
            assert set(seconds) == CHECKS
            limit = service.settings.health_check_timeout_seconds + MARGIN
            assert all(0 <= value <= limit for value in seconds.values()), seconds
        finally:
            await service.close()


class TestCache:
    @pytest.mark.timeout(30)
    async def test_within_the_cache_window_the_same_document_is_served(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """Two calls within the window: the same times (the checks did not run again)."""
        async with serving(_settings(db_url, tmp_path, health_cache_seconds=30)) as (_, client):
            first = (await client.get("/health")).json()
            await asyncio.sleep(0.05)
            second = (await client.get("/health")).json()
        assert second == first

    @pytest.mark.timeout(30)
    async def test_without_a_cache_every_call_computes(self, db_url: str, tmp_path: Path) -> None:
        """Cache 0: a later call measures again (later times)."""
        async with serving(_settings(db_url, tmp_path, health_cache_seconds=0)) as (_, client):
            first = (await client.get("/health")).json()
            await asyncio.sleep(0.05)
            second = (await client.get("/health")).json()
        before = _check(first, "database:responseTime")["time"]
        after = _check(second, "database:responseTime")["time"]
        assert after > before

    @pytest.mark.timeout(30)
    async def test_concurrent_callers_share_one_computation(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """50 callers at once, cache off: every check ran once (its duration histogram
        counted one observation) and all 50 got the same document."""
        async with serving(_settings(db_url, tmp_path, health_cache_seconds=0)) as (app, _):
            service: HealthService = app.state.health
            before = {name: sample(DURATION_COUNT, check=name) for name in CHECKS}
            answers = await asyncio.gather(*(service.health() for _ in range(50)))
            after = {name: sample(DURATION_COUNT, check=name) for name in CHECKS}
            assert {name: after[name] - before[name] for name in CHECKS} == dict.fromkeys(
                CHECKS, 1.0
            )
            assert all(document is answers[0][0] for document, _ in answers)
            # And a later call, the cache being off, computes again.
            await service.health()
            assert sample(DURATION_COUNT, check="disk:free") == after["disk:free"] + 1


class TestTimeouts:
    @pytest.mark.timeout(30)
    async def test_a_hung_database_fails_on_time_and_the_rest_is_reported(
        self, tmp_path: Path
    ) -> None:
        """A database server that accepts and never answers: /health answers within the
        check limit plus a margin, the database checks fail saying they timed out, the
        checks that need no database are still reported (and pass); /readyz too."""
        async with black_hole() as port:
            url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/hung"
            settings = _settings(url, tmp_path, health_check_timeout_seconds=0.5)
            async with serving(settings) as (_, client):
                started = time.monotonic()
                response = await client.get("/health")
                health_took = time.monotonic() - started
                started = time.monotonic()
                ready = await client.get("/readyz")
                ready_took = time.monotonic() - started
                live = await client.get("/livez")
        assert health_took < 0.5 + MARGIN
        assert ready_took < 0.5 + MARGIN
        assert response.status_code == 503
        document = response.json()
        for name in ("database:responseTime", "database:migrations", "fleet:onlineRatio"):
            entry = _check(document, name)
            assert entry["status"] == "fail", name
            assert entry["output"] == "timed out after 0.5 s", name
            assert entry["observedValue"] is None
        for name in ("vault:keyring", "disk:free", "telegram:reachability"):
            assert _check(document, name)["status"] == "pass", name
        assert ready.status_code == 503
        assert ready.json()["checks"] == {
            "database": "fail",
            "migrations": "fail",
            "keyring": "pass",
        }
        assert ready.json()["output"]["database"] == "timed out after 0.5 s"
        assert live.status_code == 200

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_a_sqlite_writer_holding_the_lock_does_not_slow_the_probes(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """The probes read (deferred BEGIN): a writer holding SQLite's write lock for
        longer than the check limit neither delays nor fails them."""
        path = make_url(db_url).database
        assert path is not None
        settings = _settings(
            db_url, tmp_path, health_check_timeout_seconds=0.5, sqlite_busy_timeout_ms=3000
        )
        async with serving(settings) as (_, client):
            writer = sqlite3.connect(path, isolation_level=None)
            try:
                writer.execute("BEGIN IMMEDIATE")
                started = time.monotonic()
                ready = await client.get("/readyz")
                health = await client.get("/health")
                took = time.monotonic() - started
            finally:
                writer.execute("ROLLBACK")
                writer.close()
        assert ready.status_code == 200
        assert _check(health.json(), "database:responseTime")["status"] == "pass"
        assert took < 0.5 + MARGIN


class TestDatabaseGone:
    @POSTGRES
    @pytest.mark.timeout(60)
    async def test_postgres_cut_off_fails_ready_and_health_not_live(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """PostgreSQL behind a proxy that is cut: /readyz and /health answer 503 with the
        database failing (and no DSN in the body), /livez stays 200; once the line is back,
        ready again."""
        url = make_url(db_url)
        async with TcpProxy(
            target_host=url.host or "127.0.0.1", target_port=url.port or 5432
        ) as proxy:
            proxied = url.set(host="127.0.0.1", port=proxy.port)
            settings = _settings(proxied.render_as_string(hide_password=False), tmp_path)
            async with serving(settings) as (_, client):
                assert (await client.get("/readyz")).status_code == 200
                await proxy.pause()
                ready = await client.get("/readyz")
                health = await client.get("/health")
                live = await client.get("/livez")
                await proxy.resume()
                back = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "fail"
        assert ready.json()["checks"]["database"] == "fail"
        assert ready.json()["output"]["database"].startswith("the database did not answer (")
        assert health.status_code == 503
        document = health.json()
        assert document["status"] == "fail"
        database = _check(document, "database:responseTime")
        assert database["status"] == "fail"
        assert database["output"].startswith("the database did not answer (")
        assert _check(document, "disk:free")["status"] == "pass"
        assert live.status_code == 200
        assert back.status_code == 200
        for body in (ready.text, health.text):
            assert str(url.database) not in body
            assert str(proxy.port) not in body

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_sqlite_file_gone_fails_ready_and_health_not_live(
        self, app: FastAPI, client: httpx.AsyncClient, db_url: str
    ) -> None:
        """The database file replaced by a directory (it cannot be opened): /readyz and
        /health fail, /livez passes; with the file back, ready again."""
        path = Path(str(make_url(db_url).database))
        service = _service(app)
        assert (await client.get("/readyz")).status_code == 200
        await app.state.engine.dispose()  # no pooled connection keeps the old file open
        away = path.with_name("moved.db")
        await asyncio.to_thread(_swap, path, away)
        try:
            ready = await client.get("/readyz")
            document, status_code = await service.health()
            live = await client.get("/livez")
        finally:
            await asyncio.to_thread(_swap_back, path, away)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "fail"
        assert status_code == 503
        assert document["status"] == "fail"
        assert _check(document, "database:responseTime")["status"] == "fail"
        assert live.status_code == 200
        assert (await client.get("/readyz")).status_code == 200


def _swap(path: Path, away: Path) -> None:
    path.rename(away)
    path.mkdir()


def _swap_back(path: Path, away: Path) -> None:
    path.rmdir()
    away.rename(path)


class TestWorkers:
    @POSTGRES
    @pytest.mark.timeout(30)
    async def test_workers_alive_from_the_worker_table(
        self, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Accounts desired running and no live worker: fail. One live worker: pass. A
        second that stopped renewing without draining: warn, named. Drained: not dead."""
        service = _service(app)
        await make_fleet(sessionmaker, 3, lease_rows=True)
        document, status_code = await service.health()
        workers = _check(document, "workers:alive")
        assert (workers["status"], workers["observedValue"]) == ("fail", 0)
        assert "3 accounts are desired running" in workers["output"]
        assert status_code == 503

        await register_worker(sessionmaker, "w1", ttl=30, capacity=100)
        workers = _check((await service.health())[0], "workers:alive")
        assert (workers["status"], workers["observedValue"]) == ("pass", 1)

        await register_worker(sessionmaker, "w2", ttl=30, capacity=100)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                text("UPDATE worker SET expires_at = now() - interval '10 seconds' WHERE id = 'w2'")
            )
        workers = _check((await service.health())[0], "workers:alive")
        assert (workers["status"], workers["observedValue"]) == ("warn", 1)
        assert "w2" in workers["output"]

        async with unit_of_work(sessionmaker) as session:
            await session.execute(text("UPDATE worker SET state = 'stopped' WHERE id = 'w2'"))
        workers = _check((await service.health())[0], "workers:alive")
        assert workers["status"] == "pass"

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_on_sqlite_the_runtime_of_this_process_counts(self, app: FastAPI) -> None:
        """tgfleet run (runtime here and running): pass; stopped: fail; API only: warn."""
        running = [True]
        service = _service(app, role="all", supervisor_running=lambda: running[0])
        assert _check((await service.health())[0], "workers:alive")["status"] == "pass"
        running[0] = False
        assert _check((await service.health())[0], "workers:alive")["status"] == "fail"
        workers = _check((await _service(app, role="api").health())[0], "workers:alive")
        assert workers["status"] == "warn"
        assert workers["output"].startswith("no account runtime in this process")

    @pytest.mark.timeout(30)
    async def test_online_ratio_against_the_thresholds(
        self, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """10 accounts desired running: all online pass (1.0), 8 warn (0.8 < 0.9), 4 fail
        (0.4 < 0.5); nobody desired running passes."""
        service = _service(app)
        ratio = _check((await service.health())[0], "fleet:onlineRatio")
        assert (ratio["status"], ratio["observedUnit"]) == ("pass", "ratio")

        ids = await make_fleet(sessionmaker, 10, lease_rows=True)
        ratio = _check((await service.health())[0], "fleet:onlineRatio")
        assert (ratio["status"], ratio["observedValue"]) == ("fail", 0.0)

        await report_states(
            sessionmaker, ids, AccountState.STARTING, previous=AccountState.STOPPED, worker="w1"
        )
        await report_states(
            sessionmaker, ids, AccountState.ONLINE, previous=AccountState.STARTING, worker="w1"
        )
        ratio = _check((await service.health())[0], "fleet:onlineRatio")
        assert (ratio["status"], ratio["observedValue"]) == ("pass", 1.0)

        await report_states(
            sessionmaker,
            ids[:2],
            AccountState.RECONNECTING,
            previous=AccountState.ONLINE,
            worker="w1",
        )
        ratio = _check((await service.health())[0], "fleet:onlineRatio")
        assert (ratio["status"], ratio["observedValue"]) == ("warn", 0.8)
        assert ratio["output"].startswith("8 of 10 accounts desired running are online")

        await report_states(
            sessionmaker,
            ids[2:6],
            AccountState.RECONNECTING,
            previous=AccountState.ONLINE,
            worker="w1",
        )
        ratio = _check((await service.health())[0], "fleet:onlineRatio")
        assert (ratio["status"], ratio["observedValue"]) == ("fail", 0.4)


class TestReadiness:
    @SQLITE
    @pytest.mark.timeout(30)
    async def test_a_worker_is_not_ready_while_its_lease_is_stale(self, app: FastAPI) -> None:
        """role=worker with lease_ready: ready while fresh, 503 naming the lease when not."""
        fresh = [True]
        service = _service(app, role="worker", lease_ready=lambda: fresh[0])
        document, status_code = await service.ready()
        assert status_code == 200
        assert document["checks"]["leases"] == "pass"
        fresh[0] = False
        document, status_code = await service.ready()
        assert status_code == 503
        assert document["checks"] == {
            "database": "pass",
            "migrations": "pass",
            "keyring": "pass",
            "leases": "fail",
        }
        assert "lease" in document["output"]["leases"]


class TestTelegram:
    @SQLITE
    @pytest.mark.timeout(30)
    async def test_one_dc_down_warns_all_down_fails(self, app: FastAPI) -> None:
        """Two DCs, one listening and one refused: warn, one entry per DC, latency for the
        up one; both refused: fail and 503. Read from the monitor's last round."""
        async with listener() as port:
            monitor = NetworkMonitor(
                {1: ("127.0.0.1", port), 2: ("127.0.0.1", closed_port())}, interval=60, timeout=1
            )
            await monitor.probe_once()
        service = _service(app, role="all", supervisor_running=lambda: True, network=monitor)
        document, status_code = await service.health()
        entries = {e["componentId"]: e for e in document["checks"]["telegram:reachability"]}
        assert set(entries) == {"dc1", "dc2"}
        assert entries["dc1"]["status"] == "pass"
        assert entries["dc1"]["observedUnit"] == "ms"
        assert entries["dc1"]["observedValue"] > 0
        assert entries["dc2"]["status"] == "warn"
        assert entries["dc2"]["observedValue"] is None
        assert "ConnectionRefusedError" in entries["dc2"]["output"]
        assert RFC3339.match(entries["dc2"]["time"])
        assert (document["status"], status_code) == ("warn", 200)
        assert sample(STATUS, check="telegram:reachability") == 0.5

        monitor.retarget({1: ("127.0.0.1", closed_port()), 2: ("127.0.0.1", closed_port())})
        await monitor.probe_once()
        document, status_code = await service.health()
        statuses = [e["status"] for e in document["checks"]["telegram:reachability"]]
        assert statuses == ["fail", "fail"]
        assert (document["status"], status_code) == ("fail", 503)
        assert sample(STATUS, check="telegram:reachability") == 0.0

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_stale_results_warn(self, app: FastAPI) -> None:
        """Results older than three probe intervals (the monitor stopped) warn."""
        async with listener() as port:
            monitor = NetworkMonitor({2: ("127.0.0.1", port)}, interval=0.1, timeout=1)
            await monitor.probe_once()
        service = _service(app, network=monitor)
        assert _check((await service.health())[0], "telegram:reachability")["status"] == "pass"
        await asyncio.sleep(0.4)
        entry = _check((await service.health())[0], "telegram:reachability")
        assert entry["status"] == "warn"
        assert "not running" in entry["output"]

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_before_the_first_probe_the_dc_warns(self, app: FastAPI) -> None:
        """A monitor that has not probed yet: warn, not a guess."""
        monitor = NetworkMonitor({2: ("127.0.0.1", closed_port())}, interval=60, timeout=1)
        entry = _check((await _service(app, network=monitor).health())[0], "telegram:reachability")
        assert (entry["status"], entry["output"]) == ("warn", "not probed yet")


class TestKeyringAndAlerting:
    @SQLITE
    @pytest.mark.timeout(30)
    async def test_a_key_file_that_no_longer_loads_warns(self, db_url: str, tmp_path: Path) -> None:
        """File keyring: a key file replaced by garbage after start warns in /health (the
        loaded keys still work) and readiness stays ready."""
        data = tmp_path / "data"
        data.mkdir(mode=0o700)
        settings = _settings(db_url, tmp_path, vault_key=None)
        init_key_file(settings.effective_vault_key_file)
        async with serving(settings) as (_, client):
            assert _check((await client.get("/health")).json(), "vault:keyring")["status"] == (
                "pass"
            )
            write_private_file(settings.effective_vault_key_file, b"{not json")
            health = (await client.get("/health")).json()
            ready = await client.get("/readyz")
        keyring = _check(health, "vault:keyring")
        assert (keyring["status"], keyring["observedValue"]) == ("warn", 1)
        assert keyring["componentId"] == "file"
        assert "could not be loaded" in keyring["output"]
        assert "not json" not in keyring["output"]
        assert ready.status_code == 200

    @SQLITE
    @pytest.mark.timeout(30)
    async def test_the_last_delivery_is_reported(self, app: FastAPI) -> None:
        """Nothing sent: pass, null. A success: pass with its time, and the metric. A
        failure after it: warn with the failure, the last success still shown."""
        service = _service(app)
        sent = utcnow() - timedelta(minutes=5)
        service.delivery.record_success(sent)
        entry = _check((await service.health())[0], "alerting:lastDelivery")
        assert entry["status"] == "pass"
        assert entry["observedValue"].startswith(sent.strftime("%Y-%m-%dT%H:%M:%S"))
        assert sample("tgfleet_alert_last_delivery_timestamp_seconds") == sent.timestamp()
        service.delivery.record_failure(utcnow(), "HTTP 502 from telegram")
        entry = _check((await service.health())[0], "alerting:lastDelivery")
        assert entry["status"] == "warn"
        assert "HTTP 502 from telegram" in entry["output"]
        assert entry["observedValue"].startswith(sent.strftime("%Y-%m-%dT%H:%M:%S"))
