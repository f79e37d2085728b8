"""/metrics: what an operator's Prometheus reads. The exposition passes promtool's naming
checks; HTTP series are labelled by route template; the fleet gauges follow the database;
the runtime's counters move with real sandbox traffic; per-account series only on request."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import uuid

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import IN_CI
from tests.worker.conftest import Fleet, FleetFactory, wait_for
from tgfleet import metrics
from tgfleet.account import commands as account_commands
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work

pytestmark = pytest.mark.timeout(120)

CONTEXT = AuditContext(actor="test")


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return _samples(response.text)


def _http(fleet: Fleet) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=fleet.app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


class TestDefinitions:
    def test_at_least_fifty_tgfleet_metrics_each_with_help_and_bounded_labels(self) -> None:
        """Every family is ours (prefix), documented, and carries no free-form label (no
        ``account`` label outside the opt-in per-account families)."""
        families = [f for f in REGISTRY.collect() if f.name.startswith("tgfleet_")]
        assert len(families) >= 50, len(families)
        per_account = {"tgfleet_account_messages_received", "tgfleet_account_replies_sent"}
        per_account |= {"tgfleet_account_online"}
        for family in families:
            assert family.documentation.strip(), family.name
            for sample in family.samples:
                assert "account" not in sample.labels or family.name in per_account, family.name


class TestEndpoint:
    async def test_the_exposition_passes_promtool_check_metrics(
        self, client: httpx.AsyncClient
    ) -> None:
        """Prometheus' own linter accepts our names, units and help texts."""
        promtool = shutil.which("promtool")
        if promtool is None:
            if IN_CI:
                pytest.fail("CI=true but promtool is missing: .ci/run installs prometheus")
            pytest.skip("promtool not installed (Debian package prometheus; CI installs it)")
        await client.get("/livez")
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        body = response.content
        result = await asyncio.to_thread(
            subprocess.run,
            [promtool, "check", "metrics"],
            input=body,
            capture_output=True,
            timeout=30,
            check=False,
        )
        problems = [
            line
            for line in (result.stdout + result.stderr).decode().splitlines()
            if line.startswith("tgfleet_")
        ]
        assert not problems, "\n".join(problems)

    async def test_http_requests_are_labelled_by_route_template_and_status(
        self, client: httpx.AsyncClient
    ) -> None:
        """A request for one account is counted under ``/api/v1/accounts/{account_id}``, never
        under its id; unmatched paths share one label."""
        template = "/api/v1/accounts/{account_id}"
        before = _value("tgfleet_http_requests_total", method="GET", route=template, status="401")
        unmatched = _value(
            "tgfleet_http_requests_total", method="GET", route="<unmatched>", status="404"
        )
        for _ in range(3):
            await client.get(f"/api/v1/accounts/{uuid.uuid4()}")
        await client.get(f"/no/such/{uuid.uuid4()}")
        scraped = await _scrape(client)
        assert (
            _value("tgfleet_http_requests_total", method="GET", route=template, status="401")
            == before + 3
        )
        assert (
            _value("tgfleet_http_requests_total", method="GET", route="<unmatched>", status="404")
            == unmatched + 1
        )
        routes = {dict(labels).get("route") for (name, labels) in scraped if "http" in name}
        assert not any(route and route.count("-") >= 4 for route in routes), routes  # no uuids
        count = ("tgfleet_http_request_duration_seconds_count", (("method", "GET"),))
        assert any(key[0] == count[0] for key in scraped)

    async def test_a_metrics_token_is_required_when_configured(
        self, client: httpx.AsyncClient
    ) -> None:
        app = client._transport.app  # type: ignore[attr-defined]
        components = app.state.components
        app.state.components = dataclasses.replace(
            components,
            settings=components.settings.model_copy(
                update={"metrics_token": SecretStr("scrape-me")}
            ),
        )
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert "TGFLEET_METRICS_TOKEN" in refused.json()["detail"]
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200
        assert b"tgfleet_http_requests_total" in ok.content


class TestFleetGauges:
    async def test_accounts_by_state_and_the_online_ratio_follow_the_database(
        self, make_fleet: FleetFactory
    ) -> None:
        fleet = await make_fleet(accounts=3, groups=1, metrics_fleet_refresh_seconds=0)
        await fleet.wait_states("online")
        async with _http(fleet) as http:
            scraped = await _scrape(http)
            assert scraped[("tgfleet_accounts", (("state", "online"),))] == 3
            assert scraped[("tgfleet_accounts_desired", (("desired", "running"),))] == 3
            assert scraped[("tgfleet_fleet_online_ratio", ())] == 1.0
            async with unit_of_work(fleet.sessionmaker) as session:
                await account_commands.control(
                    session, CONTEXT, fleet.account_id("fleet_0002"), "stop"
                )
            await fleet.wait_states({"fleet_0002": "stopped"})
            scraped = await _scrape(http)
        assert scraped[("tgfleet_accounts", (("state", "online"),))] == 2
        assert scraped[("tgfleet_accounts", (("state", "stopped"),))] == 1
        assert scraped[("tgfleet_accounts_desired", (("desired", "running"),))] == 2
        assert scraped[("tgfleet_fleet_online_ratio", ())] == 1.0  # the stopped one is wanted so


class TestRuntimeCounters:
    async def test_traffic_moves_the_worker_counters(self, make_fleet: FleetFactory) -> None:
        """A message that triggers a reply and one in a disabled group: received, sent (with
        its latency), suppressed by reason, and the clients' connects and transitions."""
        before = {
            "received": _value("tgfleet_messages_received_total"),
            "sent": _value("tgfleet_replies_sent_total", source="template"),
            "disabled": _value("tgfleet_replies_suppressed_total", reason="group_disabled"),
            "send_count": _value("tgfleet_send_duration_seconds_count"),
            "connects": _value("tgfleet_client_connect_attempts_total", outcome="ok"),
            "starting": _value(
                "tgfleet_account_state_transitions_total",
                from_state="stopped",
                to_state="starting",
            ),
        }
        fleet = await make_fleet(accounts=2, groups=2, enable=[0])
        await fleet.wait_states("online")
        assert fleet.supervisor is not None
        fleet.supervisor.observe_metrics()
        assert _value("tgfleet_worker_accounts", state="online") == 2
        assert _value("tgfleet_client_connect_attempts_total", outcome="ok") >= (
            before["connects"] + 2
        )
        assert (
            _value(
                "tgfleet_account_state_transitions_total",
                from_state="stopped",
                to_state="starting",
            )
            == before["starting"] + 2
        )
        enabled, disabled = fleet.world.groups[0], fleet.world.groups[1]
        member = next(m for m in fleet.world.members if m.id in enabled.members)
        await fleet.control.post_message(enabled.id, member.id, "help, please")

        async def replied() -> bool:
            return _value("tgfleet_replies_sent_total", source="template") >= before["sent"] + 1

        await wait_for(replied)
        other = next(m for m in fleet.world.members if m.id in disabled.members)
        await fleet.control.post_message(disabled.id, other.id, "help, please")

        async def suppressed() -> bool:
            value = _value("tgfleet_replies_suppressed_total", reason="group_disabled")
            return value >= before["disabled"] + 1

        await wait_for(suppressed)
        assert _value("tgfleet_send_duration_seconds_count") >= before["send_count"] + 1
        assert _value("tgfleet_messages_received_total") >= before["received"] + 2

    async def test_a_flood_wait_is_observed_with_its_seconds(
        self, make_fleet: FleetFactory
    ) -> None:
        before_count = _value("tgfleet_flood_wait_seconds_count", scope="account")
        before_sum = _value("tgfleet_flood_wait_seconds_sum", scope="account")
        before_errors = _value("tgfleet_errors_total", error_class="wait", reason="flood_wait")
        fleet = await make_fleet(accounts=1, groups=1)
        await fleet.wait_states("online")
        await fleet.flood_wait_next_send("fleet_0001", 2, "help, please")
        assert fleet.supervisor is not None
        fleet.supervisor.observe_metrics()
        assert _value("tgfleet_accounts_flood_waiting") == 1
        assert _value("tgfleet_flood_wait_seconds_count", scope="account") == before_count + 1
        assert _value("tgfleet_flood_wait_seconds_sum", scope="account") == before_sum + 2
        assert _value(
            "tgfleet_errors_total", error_class="wait", reason="flood_wait"
        ) == pytest.approx(before_errors + 1)
        await fleet.wait_states({"fleet_0001": "online"}, within=10)
        fleet.supervisor.observe_metrics()
        assert _value("tgfleet_accounts_flood_waiting") == 0

    async def test_per_account_series_exist_only_when_enabled(
        self, make_fleet: FleetFactory
    ) -> None:
        fleet = await make_fleet(accounts=2, groups=1)
        await fleet.wait_states("online")
        assert fleet.supervisor is not None
        metrics.configure(per_account=False, version="test", roles=())
        metrics.ACCOUNT_UP.clear()
        fleet.supervisor.observe_metrics()
        assert _value("tgfleet_account_online", account="fleet_0001") == 0.0
        assert not [s for family in metrics.ACCOUNT_UP.collect() for s in family.samples]
        try:
            metrics.configure(per_account=True, version="test", roles=())
            fleet.supervisor.observe_metrics()
            assert _value("tgfleet_account_online", account="fleet_0001") == 1.0
            assert _value("tgfleet_account_online", account="fleet_0002") == 1.0
        finally:
            metrics.configure(per_account=False, version="test", roles=())
            metrics.ACCOUNT_UP.clear()
