"""The alerts pages through the real app, with alerting running on a routing configuration
(grouped by alert name and worker; critical alerts to a webhook receiver, the rest to one
with no integrations; a worker's outage inhibits its accounts' alerts), on both databases:
the firing list grouped as the engine groups it and what mutes each alert, a silence made
from an alert's row, the silences and their expiry, the notification log per receiver, and
test notifications — each action the API twin's service and audit record."""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.conftest import make_settings
from tests.console.conftest import HTML, Browser
from tests.factories import DEFAULT_PASSWORD, FACTORY_CONTEXT, audits, login
from tests.fakes.local_server import LocalApp
from tgfleet.alert import service as alert_service
from tgfleet.alert.engine import LogEntry, group_key, group_labels, match_routes
from tgfleet.alert.runtime import AlertingRuntime
from tgfleet.alert.schemas import Alert, DeliveryResult
from tgfleet.config import Settings
from tgfleet.console.views_alerts import GROUPS_PER_PAGE
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work

XSS = "<img src=x onerror=alert(1)>"


class WebhookSink(LocalApp):
    """A webhook endpoint recording the JSON bodies it receives."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._receive, methods=["POST"])]

    async def _receive(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        return JSONResponse({"ok": True})


def routing(sink_url: str) -> str:
    return f"""
route:
  receiver: ops
  group_by: [alertname, worker]
  group_wait: 1h
  group_interval: 1h
  routes:
    - receiver: hooks
      matchers: ['severity="critical"']
receivers:
  - name: ops
  - name: hooks
    webhook_configs:
      - url: {sink_url}/hook
inhibit_rules:
  - source_matchers: ['alertname="WorkerDown"']
    target_matchers: ['alertname="AccountQuarantined"']
    equal: [worker]
"""


@pytest.fixture
async def sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink() as server:
        yield server


@pytest.fixture
def settings(db_url: str, tmp_path: Path, sink: WebhookSink) -> Settings:
    """Alerting on, with `routing`; the evaluator ticks every five minutes, so what fires is what
    a test stores."""
    config = tmp_path / "alerting.yml"
    config.write_text(routing(sink.url))
    return make_settings(
        db_url,
        tmp_path / "data",
        alerting_enabled=True,
        alerting_config=config,
        alerting_evaluation_interval_seconds=300,
        alerting_online_ratio_threshold=0.0,
    )


def runtime_of(app: FastAPI) -> AlertingRuntime:
    runtime: AlertingRuntime | None = app.state.alerting
    assert runtime is not None
    return runtime


def quarantined(account: str, worker: str) -> Alert:
    return Alert(
        labels={
            "alertname": "AccountQuarantined",
            "severity": "warning",
            "account": account,
            "worker": worker,
        },
        annotations={"summary": f"{account} quarantined"},
    )


DISK = Alert(
    labels={"alertname": "DiskFull", "severity": "critical", "worker": "w-1", "x": XSS},
    annotations={"summary": f"disk full {XSS}"},
)
WORKER_DOWN = Alert(labels={"alertname": "WorkerDown", "severity": "warning", "worker": "w-2"})


async def post(browser: Browser, url: str, data: dict[str, Any] | None = None) -> httpx.Response:
    """A form POST as the browser sends it (repeated fields as lists), CSRF token included."""
    form = {"csrf_token": browser.csrf, **(data or {})}
    return await browser.http.post(url, data=form, headers=HTML)


async def fire(maker: async_sessionmaker[AsyncSession], alerts: list[Alert]) -> None:
    async with unit_of_work(maker) as session:
        await alert_service.store_alerts(session, alerts, utcnow())


_GROUP = re.compile(r'<article class="alert-group" data-group="([^"]*)">(.*?)</article>', re.DOTALL)
_ALERT = re.compile(r'<tr data-alert="([0-9a-f]{16})">(.*?)</tr>', re.DOTALL)


def groups_of(page: str) -> dict[str, list[str]]:
    """Group key -> the fingerprints listed in it, as the page shows them."""
    return {
        html.unescape(key): [fp for fp, _ in _ALERT.findall(body)]
        for key, body in _GROUP.findall(page)
    }


def rows_of(page: str) -> dict[str, str]:
    return {fp: body for _, group in _GROUP.findall(page) for fp, body in _ALERT.findall(group)}


async def silence(
    maker: async_sessionmaker[AsyncSession], matchers: list[dict[str, Any]], comment: str
) -> uuid.UUID:
    async with unit_of_work(maker) as session:
        row = await alert_service.create_silence(
            session,
            FACTORY_CONTEXT,
            matchers=matchers,
            starts_at=None,
            ends_at=utcnow() + timedelta(hours=2),
            comment=comment,
        )
        return row.id


async def silence_count(maker: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(maker) as session:
        return len(await alert_service.list_silences(session, include_expired=True))


class TestFiring:
    async def test_groups_are_the_routes_group_by_groups(
        self, operator: Browser, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Each alert is listed in the group the engine's own routing and grouping put it
        in (alert name and worker; the critical one on the webhook route), and nowhere
        else; labels and annotations are escaped."""
        alerts = [
            quarantined("a1", "w-1"),
            quarantined("a2", "w-1"),
            quarantined("a3", "w-3"),
            DISK,
        ]
        await fire(sessionmaker, alerts)
        page = await operator.http.get("/alerts", headers=HTML)
        assert page.status_code == 200, page.text
        route = runtime_of(app).config.root_route
        expected: dict[str, list[str]] = {}
        for alert in alerts:
            for node in match_routes(route, alert.labels):
                key = group_key(node, group_labels(node, alert.labels))
                expected.setdefault(key, []).append(alert.fingerprint)
        shown = groups_of(page.text)
        assert {k: sorted(v) for k, v in shown.items()} == {
            k: sorted(v) for k, v in expected.items()
        }
        assert len(shown) == 3  # w-1 quarantines, w-3 quarantine, the disk
        disk_group = next(k for k, v in shown.items() if DISK.fingerprint in v)
        assert disk_group.startswith("route.routes[0]:")
        assert 'receiver <strong data-testid="group-receiver">hooks</strong>' in page.text
        assert XSS not in page.text
        assert "disk full &lt;img src=x onerror=alert(1)&gt;" in page.text
        assert "a1 quarantined" in rows_of(page.text)[alerts[0].fingerprint]
        (read,) = await audits(sessionmaker, "alert.read")
        assert read.actor == "user:otto"

    async def test_silenced_and_inhibited_alerts_say_by_what(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A silenced alert names the silence (id, comment, creator); an inhibited one names
        the inhibiting alert; the others say they are not muted."""
        muted, inhibited, free = (
            quarantined("a1", "w-1"),
            quarantined("a2", "w-2"),
            quarantined("a3", "w-3"),
        )
        await fire(sessionmaker, [muted, inhibited, free, WORKER_DOWN])
        silence_id = await silence(
            sessionmaker, [{"name": "account", "value": "a1"}], f"moving it {XSS}"
        )
        page = await operator.http.get("/alerts", headers=HTML)
        rows = rows_of(page.text)
        assert "silenced" in rows[muted.fingerprint]
        assert str(silence_id)[:8] in rows[muted.fingerprint]
        assert "moving it &lt;img" in rows[muted.fingerprint]
        assert FACTORY_CONTEXT.actor in rows[muted.fingerprint]
        assert "inhibited" in rows[inhibited.fingerprint]
        assert "<strong>WorkerDown</strong>" in rows[inhibited.fingerprint]
        assert "not muted" in rows[free.fingerprint]
        assert "not muted" in rows[WORKER_DOWN.fingerprint]

    async def test_groups_are_paged_by_key(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """GROUPS_PER_PAGE groups a page, in key order; "More groups" shows the rest."""
        await fire(
            sessionmaker,
            [quarantined(f"a{n:03d}", f"w-{n:03d}") for n in range(GROUPS_PER_PAGE + 1)],
        )
        first = await operator.http.get("/alerts", headers=HTML)
        keys = list(groups_of(first.text))
        assert len(keys) == GROUPS_PER_PAGE
        assert keys == sorted(keys)
        more = re.search(r'href="(/alerts\?cursor=[^"]*)"', first.text)
        assert more is not None
        second = await operator.http.get(html.unescape(more.group(1)), headers=HTML)
        assert list(groups_of(second.text)) == [
            'route:{alertname="AccountQuarantined",worker="w-050"}'
        ]
        assert "More groups</a>" not in second.text

    async def test_nothing_firing(self, operator: Browser) -> None:
        page = await operator.http.get("/alerts", headers=HTML)
        assert 'data-testid="nothing-firing"' in page.text


class TestSilences:
    async def test_a_silence_from_an_alerts_row_is_prefilled_and_created(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The row's link opens the form with one ``=`` matcher per label of the alert
        (alertname first); submitted with a comment and a preset, it is the API's silence:
        the same matchers, ``silence.create`` audited for the user, and the alert is listed
        as silenced by it."""
        alert = quarantined("a1", "w-1")
        await fire(sessionmaker, [alert])
        listing = await operator.http.get("/alerts", headers=HTML)
        link = f"/alerts/silences/new?alert={alert.fingerprint}"
        assert f'href="{link}"' in listing.text
        form = await operator.http.get(link, headers=HTML)
        assert form.status_code == 200
        names = re.findall(r'<input name="name" value="([^"]*)"', form.text)
        values = re.findall(r'<input name="value" value="([^"]*)"', form.text)
        assert names == ["alertname", "account", "severity", "worker"]
        assert values == ["AccountQuarantined", "a1", "warning", "w-1"]
        before = utcnow()
        created = await post(
            operator,
            "/alerts/silences",
            {
                "name": names,
                "op": ["="] * 4,
                "value": values,
                "duration": "4h",
                "comment": "replacing the SIM",
                "alert": alert.fingerprint,
            },
        )
        assert created.status_code == 303, created.text
        async with unit_of_work(sessionmaker) as session:
            (row,) = await alert_service.list_silences(session)
        assert row.matchers == [
            {"name": n, "value": v, "is_regex": False, "is_equal": True}
            for n, v in zip(names, values, strict=True)
        ]
        assert row.comment == "replacing the SIM"
        assert row.created_by == "user:otto"
        assert timedelta(hours=4) <= row.ends_at - before < timedelta(hours=4, minutes=1)
        (record,) = await audits(sessionmaker, "silence.create")
        assert record.actor == "user:otto"
        assert record.target == f"silence:{row.id}"
        after = await operator.http.get(created.headers["location"], headers=HTML)
        assert f"Silence {row.id} created" in after.text
        assert str(row.id)[:8] in rows_of(after.text)[alert.fingerprint]

    async def test_the_audit_records_are_the_apis(
        self,
        operator: Browser,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """A silence made and expired on the page and one made and expired through the API
        by the same user leave records of the same shape: the same details' fields, the
        same matchers, the same target form."""
        token = await login(client, "otto", DEFAULT_PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        matchers = {"name": ["account", "team"], "op": ["=", "=~"], "value": ["a1", "ops|db"]}
        page = await post(
            operator, "/alerts/silences", {**matchers, "duration": "1h", "comment": "why"}
        )
        assert page.status_code == 303
        created = await client.post(
            "/api/v1/silences",
            headers=headers,
            json={
                "matchers": [
                    {"name": "account", "value": "a1"},
                    {"name": "team", "value": "ops|db", "is_regex": True},
                ],
                "ends_at": (utcnow() + timedelta(hours=1)).isoformat(),
                "comment": "why",
            },
        )
        assert created.status_code == 201, created.text
        console_record, api_record = await audits(sessionmaker, "silence.create")
        assert console_record.actor == api_record.actor == "user:otto"
        assert console_record.details.keys() == api_record.details.keys()
        assert console_record.details["matchers"] == api_record.details["matchers"]
        assert console_record.details["matchers"] == ['account="a1"', 'team=~"ops|db"']
        console_id = console_record.target.removeprefix("silence:")
        api_id = created.json()["id"]
        assert api_record.target == f"silence:{api_id}"
        assert (await post(operator, f"/alerts/silences/{console_id}/expire")).status_code == 303
        deleted = await client.delete(f"/api/v1/silences/{api_id}", headers=headers)
        assert deleted.status_code == 200
        console_expire, api_expire = await audits(sessionmaker, "silence.expire")
        assert (console_expire.target, api_expire.target) == (
            f"silence:{console_id}",
            f"silence:{api_id}",
        )
        assert console_expire.details == api_expire.details == {}

    async def test_operators_and_rows_added_and_removed(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The form's GET buttons add and remove matcher rows, keeping what was typed; a
        regular-expression matcher is stored as one."""
        grown = await operator.http.get(
            "/alerts/silences/new",
            params={"name": ["worker"], "op": ["=~"], "value": ["w-.*"], "add": "1"},
            headers=HTML,
        )
        assert re.findall(r'<input name="name" value="([^"]*)"', grown.text) == ["worker", ""]
        assert '<option value="=~" selected>' in grown.text
        shrunk = await operator.http.get(
            "/alerts/silences/new",
            params={"name": ["worker", "x"], "op": ["=~", "="], "value": ["w-.*", "y"], "drop": 1},
            headers=HTML,
        )
        assert re.findall(r'<input name="name" value="([^"]*)"', shrunk.text) == ["worker"]
        created = await post(
            operator,
            "/alerts/silences",
            {
                "name": ["worker"],
                "op": ["=~"],
                "value": ["w-.*"],
                "duration": "1w",
                "comment": "maintenance",
            },
        )
        assert created.status_code == 303
        async with unit_of_work(sessionmaker) as session:
            (row,) = await alert_service.list_silences(session)
        assert row.matchers == [
            {"name": "worker", "value": "w-.*", "is_regex": True, "is_equal": True}
        ]

    async def test_an_empty_comment_is_refused_next_to_the_field(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """No comment: the form comes back with the message under the comment and the
        matchers as typed; no silence, no audit record."""
        refused = await post(
            operator,
            "/alerts/silences",
            {"name": ["account"], "op": ["="], "value": ["a1"], "duration": "1h", "comment": " "},
        )
        assert refused.status_code == 422
        assert 'data-testid="comment-error">Say why you silence these alerts' in refused.text
        assert '<input name="value" value="a1"' in refused.text
        assert await silence_count(sessionmaker) == 0
        assert await audits(sessionmaker, "silence.create") == []

    async def test_matchers_that_match_everything_and_past_ends_are_refused(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The service's refusals come back next to the field they are about."""
        everything = await post(
            operator,
            "/alerts/silences",
            {"name": ["x"], "op": ["=~"], "value": [".*"], "duration": "1h", "comment": "c"},
        )
        assert everything.status_code == 422
        assert 'data-testid="matchers-error">these matchers match every alert' in everything.text
        past = await post(
            operator,
            "/alerts/silences",
            {
                "name": ["x"],
                "op": ["="],
                "value": ["y"],
                "duration": "custom",
                "ends_at": "2020-01-01T00:00",
                "comment": "c",
            },
        )
        assert past.status_code == 422
        assert 'data-testid="ends-error">The end is in the past' in past.text
        assert await silence_count(sessionmaker) == 0

    async def test_expire_ends_it_as_the_apis_delete_does(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Listed as active with its matchers, creator and comment; Expire ends it now,
        ``silence.expire`` audited, and it is listed as expired."""
        silence_id = await silence(sessionmaker, [{"name": "account", "value": "a1"}], "why")
        listing = await operator.http.get("/alerts/silences", headers=HTML)
        assert f'data-silence="{silence_id}"' in listing.text
        assert "<code>account=&#34;a1&#34;</code>" in listing.text
        assert f'action="/alerts/silences/{silence_id}/expire"' in listing.text
        expired = await post(operator, f"/alerts/silences/{silence_id}/expire")
        assert expired.status_code == 303
        async with unit_of_work(sessionmaker) as session:
            assert await alert_service.list_silences(session) == []
        (record,) = await audits(sessionmaker, "silence.expire")
        assert record.target == f"silence:{silence_id}"
        assert record.actor == "user:otto"
        after = await operator.http.get(expired.headers["location"], headers=HTML)
        assert 'data-testid="no-silences"' in after.text
        expired_section = after.text.split('id="expired"')[1]
        assert f'data-silence="{silence_id}"' in expired_section
        assert 'data-testid="silence-state">expired' in expired_section


class TestHistory:
    async def test_rows_per_receiver_with_each_integrations_result(
        self, operator: Browser, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The log the dispatcher writes, newest first: delivered after a retry, failed
        with its error; filtered by receiver and by alert name."""
        log = alert_service.DatabaseLog(sessionmaker)
        now = utcnow()
        await log.record(
            LogEntry(
                'route.routes[0]:{alertname="DiskFull"}',
                "hooks",
                frozenset({"f1"}),
                frozenset(),
                now,
            ),
            [
                DeliveryResult(
                    ok=True, receiver="hooks", integration="webhook", attempts=2, messages=1
                )
            ],
        )
        await log.record(
            LogEntry(
                'route:{alertname="AccountQuarantined"}',
                "ops",
                frozenset({"f2", "f3"}),
                frozenset(),
                now,
            ),
            [
                DeliveryResult(
                    ok=False, receiver="ops", integration="telegram", attempts=3, error="HTTP 502"
                )
            ],
        )
        page = await operator.http.get("/alerts/history", headers=HTML)
        assert page.status_code == 200
        rows = re.findall(r'<tr data-notification="\d+">(.*?)</tr>', page.text, re.DOTALL)
        assert len(rows) == 2
        assert 'data-testid="receiver">ops<' in rows[0]
        assert '<span class="badge bad">failed</span>' in rows[0]
        assert "after 3 attempts" in rows[0]
        assert "HTTP 502" in rows[0]
        assert "2 firing, 0 resolved" in rows[0]
        assert 'data-testid="receiver">hooks<' in rows[1]
        assert '<span class="badge ok">sent</span>' in rows[1]
        assert "after 2 attempts" in rows[1]
        hooks = await operator.http.get("/alerts/history?receiver=hooks", headers=HTML)
        assert re.findall(r'data-testid="receiver">(\w+)<', hooks.text) == ["hooks"]
        named = await operator.http.get(
            "/alerts/history?alertname=AccountQuarantined", headers=HTML
        )
        assert re.findall(r'data-testid="receiver">(\w+)<', named.text) == ["ops"]
        (read, *_) = await audits(sessionmaker, "alert.history.read")
        assert read.actor == "user:otto"

    async def test_paged_by_cursor(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Fifty a page, then the older ones through the cursor link."""
        log = alert_service.DatabaseLog(sessionmaker)
        for n in range(52):
            await log.record(
                LogEntry(
                    f'route:{{alertname="A{n}"}}', "ops", frozenset({"f"}), frozenset(), utcnow()
                ),
                [DeliveryResult(ok=True, receiver="ops", integration="webhook")],
            )
        first = await operator.http.get("/alerts/history", headers=HTML)
        assert first.text.count("<tr data-notification=") == 50
        more = re.search(r'href="(/alerts/history\?[^"]*cursor=[^"]*)"', first.text)
        assert more is not None
        second = await operator.http.get(html.unescape(more.group(1)), headers=HTML)
        keys = re.findall(r"alertname=&#34;(A\d+)&#34;", second.text)
        assert keys == ["A1", "A0"]


class TestTestNotification:
    async def test_a_receiver_with_no_integrations_gets_the_clear_answer(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        sent = await post(operator, "/alerts/test", {"receiver": "ops"})
        assert sent.status_code == 303
        page = await operator.http.get(sent.headers["location"], headers=HTML)
        assert "The receiver ops has no integrations: nothing was sent." in page.text
        (record,) = await audits(sessionmaker, "alert.test")
        assert record.target == "receiver:ops"
        assert record.result == "failure"
        assert record.details == {"integrations": [], "ok": False}

    async def test_a_webhook_receiver_delivers_to_the_local_server(
        self, operator: Browser, sink: WebhookSink, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        sent = await post(operator, "/alerts/test", {"receiver": "hooks"})
        page = await operator.http.get(sent.headers["location"], headers=HTML)
        assert "Test notification to hooks: webhook delivered." in page.text
        (body,) = sink.bodies
        assert body["receiver"] == "hooks"
        assert body["alerts"][0]["labels"]["alertname"] == "TestNotification"
        (record,) = await audits(sessionmaker, "alert.test")
        assert (record.actor, record.result) == ("user:otto", "success")

    async def test_an_unknown_receiver_names_the_known_ones(self, operator: Browser) -> None:
        sent = await post(operator, "/alerts/test", {"receiver": "nobody"})
        page = await operator.http.get(sent.headers["location"], headers=HTML)
        assert "no receiver &#39;nobody&#39; (known: hooks, ops)" in page.text


class TestPermissions:
    async def test_a_viewer_reads_but_sees_no_action(
        self, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        alert = quarantined("a1", "w-1")
        await fire(sessionmaker, [alert])
        silence_id = await silence(sessionmaker, [{"name": "account", "value": "a1"}], "why")
        for url in ("/alerts", "/alerts/silences", "/alerts/history"):
            page = await console_viewer.http.get(url, headers=HTML)
            assert page.status_code == 200, url
            assert '<a href="/alerts" aria-current="page">Alerts</a>' in page.text
            assert "/alerts/silences/new" not in page.text
            assert 'action="/alerts/test"' not in page.text
            assert f"/alerts/silences/{silence_id}/expire" not in page.text
        form = await console_viewer.http.get(
            f"/alerts/silences/new?alert={alert.fingerprint}", headers=HTML
        )
        assert form.status_code == 403

    @pytest.mark.parametrize(
        ("path", "data"),
        [
            (
                "/alerts/silences",
                {
                    "name": ["account"],
                    "op": ["="],
                    "value": ["a1"],
                    "duration": "1h",
                    "comment": "c",
                },
            ),
            ("/alerts/silences/{id}/expire", {}),
            ("/alerts/test", {"receiver": "hooks"}),
        ],
    )
    async def test_a_viewers_forged_posts_are_refused_and_audited(
        self,
        console_viewer: Browser,
        sink: WebhookSink,
        sessionmaker: async_sessionmaker[AsyncSession],
        path: str,
        data: dict[str, Any],
    ) -> None:
        """With the viewer's own CSRF token: 403, ``auth.denied`` naming alert:write, and
        nothing written or sent."""
        silence_id = await silence(sessionmaker, [{"name": "account", "value": "a1"}], "why")
        forged = await post(console_viewer, path.format(id=silence_id), data)
        assert forged.status_code == 403
        (denied,) = await audits(sessionmaker, "auth.denied")
        assert denied.actor == "user:vera"
        assert denied.target == f"POST {path.replace('{id}', '{silence_id}')}"
        assert denied.details == {"permission": "alert:write", "role": "viewer"}
        async with unit_of_work(sessionmaker) as session:
            (row,) = await alert_service.list_silences(session)
        assert row.id == silence_id
        assert sink.bodies == []
        assert await audits(sessionmaker, "alert.test") == []

    async def test_a_post_without_the_csrf_token_is_refused(
        self, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        forged = await operator.http.post("/alerts/test", data={"receiver": "hooks"}, headers=HTML)
        assert forged.status_code == 403
        (denied,) = await audits(sessionmaker, "auth.denied")
        assert denied.details == {"reason": "csrf_token", "via": "console"}
