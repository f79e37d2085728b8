"""The alerts page in a process without alerting (the test default): the stored alerts are
listed in the default routing's one group, each group lists ALERTS_PER_GROUP alerts and
counts the rest, and a test notification says why none can be sent from here."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import audits
from tgfleet.alert import service as alert_service
from tgfleet.alert.schemas import Alert
from tgfleet.console.views_alerts import ALERTS_PER_GROUP
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work


async def test_one_default_group_lists_its_first_alerts_and_counts_the_rest(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The default route groups by no label: one group, to the receiver ``default``; it
    lists ALERTS_PER_GROUP alerts and says how many more it holds."""
    async with unit_of_work(sessionmaker) as session:
        await alert_service.store_alerts(
            session,
            [
                Alert(labels={"alertname": "AccountQuarantined", "account": f"a{n:03d}"})
                for n in range(ALERTS_PER_GROUP + 2)
            ],
            utcnow(),
        )
    page = await operator.http.get("/alerts", headers=HTML)
    assert page.status_code == 200
    assert page.text.count('<article class="alert-group"') == 1
    assert 'data-group="route:{}"' in page.text
    assert 'data-testid="group-receiver">default<' in page.text
    assert len(re.findall(r'<tr data-alert="[0-9a-f]{16}">', page.text)) == ALERTS_PER_GROUP
    assert "and 2 more in this group" in page.text
    assert "Alerting is not running in this process" in page.text
    assert 'action="/alerts/test"' not in page.text


async def test_a_test_notification_says_alerting_is_not_running_here(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A forged-by-hand POST (the form is not shown) gets the API's 503 reason as a
    notice; nothing is audited as sent."""
    sent = await operator.http.post(
        "/alerts/test", data={"csrf_token": operator.csrf, "receiver": "default"}, headers=HTML
    )
    assert sent.status_code == 303
    page = await operator.http.get(sent.headers["location"], headers=HTML)
    assert "alerting is not running in this process" in page.text
    assert await audits(sessionmaker, "alert.test") == []
