"""The overview and the accounts table: what they show, the filters in the URL, and bulk
actions with their preview, confirmation and audit, through the real app."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import account_row, audits, make_accounts, report_states
from tgfleet.models import DesiredState

XSS = "<img src=x onerror=alert(1)>"
_ROW = re.compile(r'<th scope="row"><a href="/accounts/[^"]+">([^<]+)</a>')


def labels_listed(page: str) -> list[str]:
    return _ROW.findall(page)


async def test_the_overview_counts_states_and_names_the_worker(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(sessionmaker, ["a1", "a2", "a3"], running=True)
    await report_states(sessionmaker, ids[:2], "online", previous="starting", worker="w-1")
    await report_states(
        sessionmaker, ids[2:], "quarantined", reason="auth_key_unregistered", worker="w-1"
    )
    page = await operator.http.get("/", headers=HTML)
    assert page.status_code == 200
    text = page.text
    assert 'data-testid="online-ratio">66.7%<' in text
    assert 'data-testid="online-count">2<' in text
    assert 'data-state-count="quarantined">\n      <strong>1</strong>' in text
    assert '<a href="/accounts?worker=w-1">w-1</a>' in text
    assert "auth_key_unregistered" in text  # the latest events list the quarantine's reason


async def test_filters_live_in_the_url_and_select_on_the_server(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(sessionmaker, ["fleet_00-a", "fleet_00-b", "fleet_01-a", "other"])
    await report_states(sessionmaker, ids[:1], "online", previous="starting", worker="w-1")
    page = await operator.http.get("/accounts?label=fleet_00&sort=-label", headers=HTML)
    assert page.status_code == 200
    assert labels_listed(page.text) == ["fleet_00-b", "fleet_00-a"]
    online = await operator.http.get("/accounts?state=online", headers=HTML)
    assert "fleet_00-a" in online.text
    assert "fleet_00-b" not in online.text
    bad = await operator.http.get("/accounts?state=sleeping", headers=HTML)
    assert bad.status_code == 422
    assert "state" in bad.text


async def test_an_htmx_filter_change_renders_only_the_results(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await make_accounts(sessionmaker, ["x1"])
    part = await operator.http.get(
        "/accounts?q=x1", headers={**HTML, "HX-Request": "true", "HX-Target": "results"}
    )
    assert part.status_code == 200
    assert "<html" not in part.text
    assert 'href="/accounts/' in part.text


async def test_bulk_stop_all_matching_previews_then_acts_as_the_api_does(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(
        sessionmaker, ["fleet_00-a", "fleet_00-b", "fleet_01-a"], running=True
    )
    preview = await operator.post(
        "/accounts/bulk/preview",
        {"action": "stop", "scope": "matching", "label": "fleet_00"},
    )
    assert preview.status_code == 200
    assert 'data-testid="preview-count" data-count="2">' in preview.text
    assert "This will stop 2 accounts matching the filter." in preview.text
    assert (await account_row(sessionmaker, ids[0])).desired_state is DesiredState.RUNNING

    done = await operator.post(
        "/accounts/bulk",
        {"action": "stop", "scope": "matching", "label": "fleet_00", "expected": "2"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/accounts?label=fleet_00"
    assert [(await account_row(sessionmaker, i)).desired_state for i in ids] == [
        DesiredState.STOPPED,
        DesiredState.STOPPED,
        DesiredState.RUNNING,
    ]
    (record,) = await audits(sessionmaker, "account.bulk")
    assert record.actor == "user:otto"
    assert record.details == {
        "action": "stop",
        "filter": {"label": "fleet_00"},
        "matched": 2,
        "changed": 2,
    }
    after = await operator.http.get(done.headers["location"], headers=HTML)
    assert "stop: 2 matched, 2 changed." in after.text


async def test_bulk_on_selected_rows(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(sessionmaker, ["s1", "s2", "s3"], running=False)
    form = {"action": "start", "scope": "selected", "ids": [str(ids[0]), str(ids[2])]}
    preview = await operator.http.post(
        "/accounts/bulk/preview", data={"csrf_token": operator.csrf, **form}, headers=HTML
    )
    assert "This will start 2 selected accounts." in preview.text
    assert "s1" in preview.text
    assert "s3" in preview.text
    done = await operator.http.post(
        "/accounts/bulk", data={"csrf_token": operator.csrf, **form}, headers=HTML
    )
    assert done.status_code == 303
    states = [(await account_row(sessionmaker, i)).desired_state for i in ids]
    assert states == [DesiredState.RUNNING, DesiredState.STOPPED, DesiredState.RUNNING]
    (record,) = await audits(sessionmaker, "account.bulk")
    assert record.details == {"action": "start", "ids": 2, "matched": 2, "changed": 2}


async def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused_and_audited(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(sessionmaker, ["v1"], running=True)
    page = await console_viewer.http.get("/accounts", headers=HTML)
    assert page.status_code == 200
    assert "/accounts/bulk/preview" not in page.text
    assert "data-select-row" not in page.text
    forged = await console_viewer.post(
        "/accounts/bulk", {"action": "stop", "scope": "selected", "ids": str(ids[0])}
    )
    assert forged.status_code == 403
    assert (await account_row(sessionmaker, ids[0])).desired_state is DesiredState.RUNNING
    (record,) = await audits(sessionmaker, "auth.denied")
    assert (record.actor, record.target, record.result) == (
        "user:vera",
        "POST /accounts/bulk",
        "denied",
    )
    assert record.details["permission"] == "account:control"


async def test_a_hostile_label_renders_as_text(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    ids = await make_accounts(sessionmaker, [XSS])
    await report_states(sessionmaker, ids, "error", reason=XSS, worker=XSS)
    for url in ("/accounts", "/", f"/accounts?q={XSS}"):
        page = await operator.http.get(url, headers=HTML)
        assert page.status_code == 200, url
        assert XSS not in page.text, url
        assert "&lt;img src=x onerror=alert(1)&gt;" in page.text, url
