"""The overview lists the first firing alerts and counts the rest, on the page and in its
live redraw (bench/console.py: a mass quarantine fires one alert per account, and listing
1,000 took 250 KB and half the page's time). Through the real app, both databases."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import make_accounts, report_states
from tgfleet.account import service as account_service
from tgfleet.account.live import LiveBatch, LiveEvent
from tgfleet.alert import service as alert_service
from tgfleet.alert.schemas import Alert
from tgfleet.console.live_pages import SharedRender
from tgfleet.console.views import OVERVIEW_ALERTS
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work

XSS = "<img src=x onerror=alert(1)>"
HOUR = timedelta(hours=1)
_LISTED = re.compile(r"<strong>(AccountQuarantined-\d+|Critical[^<]*)</strong>")


async def fire(maker: async_sessionmaker[AsyncSession], alerts: list[Alert]) -> None:
    async with unit_of_work(maker) as session:
        await alert_service.store_alerts(session, alerts, utcnow())


async def test_the_overview_lists_the_first_alerts_and_counts_the_rest(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    extra = 7
    await fire(
        sessionmaker,
        [
            Alert(labels={"alertname": f"AccountQuarantined-{n:03d}", "severity": "warning"})
            for n in range(OVERVIEW_ALERTS + extra - 1)
        ]
        + [
            Alert(labels={"alertname": f"Critical {XSS}", "severity": "critical"}),
            # Resolved: neither listed nor counted.
            Alert(labels={"alertname": "AccountQuarantined-000-old"}, ends_at=utcnow() - HOUR),
        ],
    )
    page = await operator.http.get("/", headers=HTML)
    assert page.status_code == 200
    listed = _LISTED.findall(page.text)
    # The critical one first (severity, then name), escaped; then warnings by name.
    assert listed[0] == "Critical &lt;img src=x onerror=alert(1)&gt;"
    assert listed[1:] == [f"AccountQuarantined-{n:03d}" for n in range(OVERVIEW_ALERTS - 1)]
    assert f"({OVERVIEW_ALERTS + extra})</small></h2>" in page.text
    assert f'data-testid="alerts-more">and {extra} more firing</p>' in page.text
    assert XSS not in page.text


async def test_every_alert_is_listed_when_they_are_few(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await fire(sessionmaker, [Alert(labels={"alertname": "AccountQuarantined-000"})])
    page = await operator.http.get("/", headers=HTML)
    assert _LISTED.findall(page.text) == ["AccountQuarantined-000"]
    assert "(1)</small></h2>" in page.text
    assert "alerts-more" not in page.text


async def test_the_live_redraw_lists_as_many_and_counts_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (account,) = await make_accounts(sessionmaker, ["q1"], running=True)
    await report_states(sessionmaker, [account], "quarantined", worker="w-1")
    await fire(
        sessionmaker,
        [
            Alert(labels={"alertname": f"AccountQuarantined-{n:03d}"})
            for n in range(OVERVIEW_ALERTS + 3)
        ],
    )
    async with unit_of_work(sessionmaker) as session:
        summary = await account_service.fleet_summary(session)
    change = LiveEvent(
        id=1,
        account_id=account,
        label="q1",
        kind="state",
        state="quarantined",
        previous_state="online",
        code=None,
        worker_id="w-1",
        at=utcnow(),
    )
    blocks = dict(await SharedRender(sessionmaker).overview(LiveBatch([change], summary, 1)))
    alerts = blocks["alerts"]
    assert _LISTED.findall(alerts) == [
        f"AccountQuarantined-{n:03d}" for n in range(OVERVIEW_ALERTS)
    ]
    assert f"({OVERVIEW_ALERTS + 3})</small></h2>" in alerts
    assert 'data-testid="alerts-more">and 3 more firing</p>' in alerts
