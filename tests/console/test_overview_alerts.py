"""The overview lists the first firing alerts and counts the rest (bench/console.py: a mass
quarantine fires one alert per account, and listing 1,000 took 250 KB and half the page's
time). Through the real app, both databases."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tgfleet.alert import service as alert_service
from tgfleet.alert.schemas import Alert
from tgfleet.console.views import OVERVIEW_ALERTS
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work

XSS = "<img src=x onerror=alert(1)>"
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
        + [Alert(labels={"alertname": f"Critical {XSS}", "severity": "critical"})],
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
