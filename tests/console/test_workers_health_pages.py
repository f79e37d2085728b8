"""The workers page (epoch, capacity, accounts held, heartbeat age, alive, fenced or
stopped; the unassigned accounts) from real lease rows on PostgreSQL and what SQLite says
instead; and the health page: the /health document check by check with its status in
words, through the real app."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import make_fleet, register_worker
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service

Maker = async_sessionmaker[AsyncSession]
POSTGRES = pytest.mark.parametrize("backend", ["postgres"], indirect=True)
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def cells(page: str, attribute: str, key: str) -> dict[str, str]:
    """The ``data-testid`` cells of the row ``attribute=key``, tags stripped."""
    found = re.search(rf'<tr {attribute}="{re.escape(key)}">(.*?)</tr>', page, re.DOTALL)
    assert found, f"no row {attribute}={key}"
    return {
        name: " ".join(re.sub(r"<[^>]+>", " ", value).split())
        for name, value in re.findall(
            r'data-testid="([\w-]+)">(.*?)</td>', found.group(1), re.DOTALL
        )
    }


def listed(page: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)">', page)


@POSTGRES
async def test_workers_with_epoch_held_heartbeat_and_alive_or_fenced(
    operator: Browser, sessionmaker: Maker
) -> None:
    """w1 holds two of three accounts (alive), w2 stopped renewing (fenced), w3 drained
    (stopped); the third account is unassigned and the page links to it."""
    await make_fleet(sessionmaker, 3, lease_rows=True)
    first = await register_worker(sessionmaker, "w1", ttl=30, capacity=100)
    w1 = await register_worker(sessionmaker, "w1", ttl=30, capacity=100)  # a restart
    assert w1.epoch > first.epoch
    await register_worker(sessionmaker, "w2", ttl=30, capacity=50)
    await register_worker(sessionmaker, "w3", ttl=30, capacity=10)
    async with unit_of_work(sessionmaker) as session:
        assert len(await lease_service.claim(session, w1, limit=2)) == 2
        await session.execute(
            text(
                "UPDATE worker SET expires_at = now() - interval '10 seconds', "
                "heartbeat_at = now() - interval '40 seconds' WHERE id = 'w2'"
            )
        )
        await session.execute(text("UPDATE worker SET state = 'stopped' WHERE id = 'w3'"))
    page = await operator.http.get("/workers", headers=HTML)
    assert page.status_code == 200, page.text
    assert listed(page.text, "data-worker") == ["w1", "w2", "w3"]
    one = cells(page.text, "data-worker", "w1")
    assert one["status"] == "alive"
    assert one["epoch"] == f"{w1.epoch:,}"
    assert one["held"].startswith("2 / 100")
    age = re.match(r"([\d.]+) s ago", one["heartbeat"])
    assert age
    assert float(age.group(1)) < 30
    two = cells(page.text, "data-worker", "w2")
    assert two["status"].startswith("fenced lease expired")
    assert two["held"] == "0 / 50"
    age = re.match(r"([\d.]+) s ago", two["heartbeat"])
    assert age
    assert 40 <= float(age.group(1)) < 100
    assert cells(page.text, "data-worker", "w3")["status"] == "stopped drained"
    assert "1 account is meant to run but no live worker holds it." in page.text
    assert 'href="/accounts?state=unassigned"' in page.text


@SQLITE
async def test_on_sqlite_the_page_says_the_one_process_runs_everything(
    operator: Browser,
) -> None:
    page = await operator.http.get("/workers", headers=HTML)
    assert page.status_code == 200
    assert listed(page.text, "data-worker") == []
    assert "tgfleet run runs every account in its own process" in page.text


async def test_the_health_page_renders_the_document_check_by_check(
    operator: Browser, client: httpx.AsyncClient
) -> None:
    document = (await client.get("/health")).json()
    page = await operator.http.get("/health/checks", headers=HTML)
    assert page.status_code == 200, page.text
    words = {"pass": "ok", "warn": "warn", "fail": "fail"}
    expected = {
        name + (f"/{entry['componentId']}" if entry.get("componentId") else "")
        for name, entries in document["checks"].items()
        for entry in entries
    }
    assert set(listed(page.text, "data-check")) == expected
    for name, entries in document["checks"].items():
        for entry in entries:
            key = name + (f"/{entry['componentId']}" if entry.get("componentId") else "")
            row = cells(page.text, "data-check", key)
            assert row["status"] == words[entry["status"]], key
            assert row["output"] == (entry.get("output") or ""), key
    overall = re.search(r'data-testid="overall">(.*?)</p>', page.text, re.DOTALL)
    assert overall
    assert f"Overall: {words[document['status']]}" in " ".join(
        re.sub(r"<[^>]+>", " ", overall.group(1)).split()
    )
    assert re.search(r"[\d.,]+ ms</td>", page.text)


async def test_who_reads_which_page(console_viewer: Browser) -> None:
    """A viewer (account:read) reads both pages and sees both in the navigation; they are
    console pages (the console's CSP, which lets their styles and scripts load)."""
    for url in ("/workers", "/health/checks"):
        page = await console_viewer.http.get(url, headers=HTML)
        assert page.status_code == 200, url
        assert f'href="{url}"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"], url


async def test_signed_out_visitors_are_sent_to_sign_in(client: httpx.AsyncClient) -> None:
    for url in ("/workers", "/health/checks", "/groups"):
        page = await client.get(url, headers=HTML)
        assert page.status_code == 303, url
        assert page.headers["location"].startswith("/login")


async def test_the_palette_finds_both_pages(console_viewer: Browser) -> None:
    """ "health" jumps to the console's page (not the API's JSON at /health), "workers" or
    "heartbeat" to the workers page."""
    block = {**HTML, "HX-Request": "true", "HX-Target": "palette-results"}
    for query, url in (("health", "/health/checks"), ("heartbeat", "/workers")):
        found = await console_viewer.http.get("/palette", params={"q": query}, headers=block)
        assert re.findall(r'<a href="([^"]+)" data-palette-item data-kind="page">', found.text) == [
            url
        ], query
