"""The audit pages: the log filtered by actor, action, target and time, paged by cursor;
one record's every field; the chain verified (and, once a row is tampered with, the bad
record named); the export with a reason, only with ``audit:export`` — through the real app
on both databases, against the API's own answers."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, browser_for
from tests.factories import Credentials, audits, user_with_role
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth.service import Security
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work

_ROW = re.compile(r'<tr data-seq="(\d+)">')
XSS = "<img src=x onerror=alert(1)>"


def seqs(page: str) -> list[int]:
    return [int(found) for found in _ROW.findall(page)]


def shown(page: str, name: str) -> str:
    """The text inside the element ``data-testid=name`` (tags stripped, entities read)."""
    found = re.search(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', page, re.DOTALL)
    assert found, f"no {name} on the page"
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", found.group(2)).split()))


async def write(
    maker: async_sessionmaker[AsyncSession],
    actor: str,
    action: str,
    target: str,
    details: dict[str, object] | None = None,
) -> int:
    async with unit_of_work(maker) as session:
        entry = await audit_service.record(
            session, AuditContext(actor=actor), action=action, target=target, details=details
        )
        return entry.seq


async def seeded(maker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Four records by two actors on two targets."""
    return {
        "a1": await write(maker, "user:alice", "vault.rotate.start", "kek:k1", {"n": 1}),
        "b1": await write(maker, "user:bob", "account.stop", "account:one"),
        "a2": await write(maker, "user:alice", "account.start", "account:one"),
        "b2": await write(maker, "user:bob", "vault.rotate.finish", "kek:k1", {"n": 2}),
    }


async def auditor(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> Browser:
    return await browser_for(client, sessionmaker, security, "auditor", "audrey")


class TestTheLog:
    async def test_filters_select_the_records_the_api_selects(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """Actor, action (exact and prefix), target: the page lists exactly the API's records."""
        rec = await seeded(sessionmaker)
        audrey = await auditor(client, sessionmaker, security)
        cases = [
            ({"actor": "user:alice"}, [rec["a2"], rec["a1"]]),
            ({"action": "vault.*"}, [rec["b2"], rec["a1"]]),
            ({"action": "account.stop"}, [rec["b1"]]),
            ({"target": "account:one", "actor": "user:bob"}, [rec["b1"]]),
        ]
        for params, expected in cases:
            page = await audrey.http.get("/audit", params=params, headers=HTML)
            assert page.status_code == 200, page.text
            assert seqs(page.text) == expected, params
            api = await client.get("/api/v1/audit", params=params, headers=admin.headers)
            assert [item["seq"] for item in api.json()["items"]] == expected
        await audrey.http.aclose()

    async def test_the_time_range_is_inclusive_from_and_exclusive_to(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """From a minute ago lists today's records, to a minute ago none of them; a local
        datetime (as the browser's picker sends it) reads as UTC."""
        rec = await seeded(sessionmaker)
        audrey = await auditor(client, sessionmaker, security)
        before = (utcnow() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
        page = await audrey.http.get("/audit", params={"from": before}, headers=HTML)
        assert set(rec.values()) <= set(seqs(page.text))
        page = await audrey.http.get("/audit", params={"to": before}, headers=HTML)
        assert seqs(page.text) == []
        assert "No records match these filters." in page.text
        await audrey.http.aclose()

    async def test_hostile_filters_are_named_next_to_their_field_and_nothing_is_listed(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """Too long, a * inside, no time, an end before the start:
        each field says what is wrong; nothing is listed; the value is shown back escaped."""
        await seeded(sessionmaker)
        audrey = await auditor(client, sessionmaker, security)
        cases = [
            ({"actor": "a" * 201}, "actor", "At most 200 characters."),
            ({"action": "va*ult"}, "action", "Use * only at the end"),
            ({"from": "yesterday"}, "from", "Not a time"),
            ({"from": "2026-02-01T00:00", "to": "2026-01-01T00:00"}, "to", "after the start"),
        ]
        for params, field, message in cases:
            page = await audrey.http.get("/audit", params=params, headers=HTML)
            assert page.status_code == 200, params
            assert message in shown(page.text, f"error-{field}"), params
            assert seqs(page.text) == [], params
        page = await audrey.http.get("/audit", params={"actor": XSS}, headers=HTML)
        assert XSS not in page.text
        assert html.escape(XSS, quote=True) in page.text
        control = await audrey.http.get("/audit", params={"target": "x\x07y"}, headers=HTML)
        assert control.status_code == 400  # the input guard refuses it before the page
        too_long = await audrey.http.get("/audit", params={"actor": "a" * 1001}, headers=HTML)
        assert too_long.status_code == 422
        broken = await audrey.http.get("/audit", params={"cursor": "!!"}, headers=HTML)
        assert "broken" in shown(broken.text, "error-cursor")
        await audrey.http.aclose()

    async def test_pages_by_cursor_without_gap_or_repeat(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """120 records of one actor: 50, 50, then 20 through 'Older', newest first."""
        written = [
            await write(sessionmaker, "user:many", "account.stop", f"account:{i}")
            for i in range(120)
        ]
        audrey = await auditor(client, sessionmaker, security)
        listed: list[int] = []
        url = "/audit?actor=user%3Amany"
        for _ in range(3):
            page = await audrey.http.get(url, headers=HTML)
            listed += seqs(page.text)
            older = re.search(r'href="([^"]+)"[^>]*data-testid="older"', page.text)
            if older is None:
                break
            url = html.unescape(older.group(1))
            assert "actor=user%3Amany" in url
        assert listed == sorted(written, reverse=True)
        assert 'data-testid="older"' not in page.text
        await audrey.http.aclose()

    async def test_a_records_page_shows_every_field_and_the_chain(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """The details as JSON, the hashes and the MAC as the API reads them; hostile
        details render as text; an unknown or malformed seq is the 404 page."""
        seq = await write(
            sessionmaker, "user:eve", "account.stop", "account:x", {"note": XSS, "n": [1, 2]}
        )
        audrey = await auditor(client, sessionmaker, security)
        page = await audrey.http.get(f"/audit/{seq}", headers=HTML)
        assert page.status_code == 200
        (api,) = (
            await client.get("/api/v1/audit", params={"actor": "user:eve"}, headers=admin.headers)
        ).json()["items"]
        assert shown(page.text, "record-actor") == "user:eve"
        assert shown(page.text, "record-hash") == api["hash"]
        assert shown(page.text, "record-prev-hash") == api["prev_hash"]
        assert json.loads(shown(page.text, "record-details")) == {"note": XSS, "n": [1, 2]}
        assert XSS not in page.text
        assert api["mac"] in page.text
        for missing in ("999999", "abc", "-1", "9" * 30):
            response = await audrey.http.get(f"/audit/{missing}", headers=HTML)
            assert response.status_code == 404, missing
        await audrey.http.aclose()

    async def test_nav_and_page_only_for_who_may_read_the_log(
        self,
        client: httpx.AsyncClient,
        operator: Browser,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """The operator (no audit:read) has no Audit link and gets 403, audited."""
        home = await operator.http.get("/", headers=HTML)
        assert 'href="/audit"' not in home.text
        refused = await operator.http.get("/audit", headers=HTML)
        assert refused.status_code == 403
        (denied,) = await audits(sessionmaker, "auth.denied")
        assert denied.details == {"permission": "audit:read", "role": "operator"}
        audrey = await auditor(client, sessionmaker, security)
        assert 'href="/audit"' in (await audrey.http.get("/", headers=HTML)).text
        await audrey.http.aclose()


class TestVerify:
    async def test_verify_passes_then_names_the_tampered_record(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """An intact chain reads ok with its count; after an UPDATE of one record's details
        the page names that record, links it and says why."""
        rec = await seeded(sessionmaker)
        audrey = await auditor(client, sessionmaker, security)
        page = await audrey.http.get("/audit/verify", headers=HTML)
        assert page.status_code == 200
        assert 'data-ok="true"' in page.text
        assert "The chain is intact" in shown(page.text, "verify-result")
        count = int(shown(page.text, "verify-count").replace(",", ""))
        assert count >= len(rec)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                text("UPDATE audit_record SET details = :d WHERE seq = :s"),
                {"d": '{"n": 99}', "s": rec["b1"]},
            )
        block = await audrey.http.get(
            "/audit/verify", headers=HTML | {"HX-Request": "true", "HX-Target": "verify"}
        )
        assert "<html" not in block.text
        assert 'data-ok="false"' in block.text
        assert shown(block.text, "first-bad") == f"#{rec['b1']}"
        assert f'href="/audit/{rec["b1"]}"' in block.text
        assert "does not match the record's content" in shown(block.text, "verify-reason")
        await audrey.http.aclose()


class TestExport:
    async def test_export_needs_the_permission_a_reason_and_is_audited_with_both(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """The auditor (audit:read only) sees no form and a forged POST is refused; the
        admin without a reason gets the message at the field, nothing recorded; with one,
        the filtered records as JSON lines (the API's lines) and an audit.export record."""
        rec = await seeded(sessionmaker)
        audrey = await auditor(client, sessionmaker, security)
        page = await audrey.http.get("/audit", headers=HTML)
        assert 'action="/audit/export"' not in page.text
        forged = await audrey.post("/audit/export", {"reason": "curious"})
        assert forged.status_code == 403
        (denied,) = await audits(sessionmaker, "auth.denied")
        assert denied.details == {"permission": "audit:export", "role": "auditor"}
        await audrey.http.aclose()

        ada = await browser_for(client, sessionmaker, security, "admin", "ada")
        page = await ada.http.get("/audit?actor=user%3Aalice", headers=HTML)
        assert 'action="/audit/export"' in page.text
        missing = await ada.post("/audit/export", {"reason": " x ", "actor": "user:alice"})
        assert missing.status_code == 200
        assert "Give the reason" in shown(missing.text, "error-reason")
        assert await audits(sessionmaker, "audit.export") == []

        bad_filter = await ada.post("/audit/export", {"reason": "quarterly", "from": "soon"})
        assert bad_filter.status_code == 200
        assert "Not a time" in shown(bad_filter.text, "error-from")
        assert await audits(sessionmaker, "audit.export") == []

        exported = await ada.post(
            "/audit/export", {"reason": "quarterly review", "actor": "user:alice"}
        )
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert "attachment" in exported.headers["content-disposition"]
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [line["seq"] for line in lines] == [rec["a1"], rec["a2"]]
        (record,) = await audits(sessionmaker, "audit.export")
        assert record.actor == "user:ada"
        assert record.details == {"reason": "quarterly review", "filters": {"actor": "user:alice"}}

        api = await client.post(
            "/api/v1/audit/export",
            json={"reason": "quarterly review", "filters": {"actor": "user:alice"}},
            headers=admin.headers,
        )
        assert api.status_code == 200
        assert api.text == exported.text
        await ada.http.aclose()


class TestExportApi:
    async def test_the_api_export_streams_filtered_lines_and_records_reason_and_filters(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Lines oldest first with the fields and hashes of GET /api/v1/audit; the record
        names the reason and the filters; a short reason or an unknown field is a 422 and
        nothing is recorded."""
        rec = await seeded(sessionmaker)
        response = await client.post(
            "/api/v1/audit/export",
            json={"reason": "incident 42", "filters": {"action": "vault.*"}},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert [line["seq"] for line in lines] == [rec["a1"], rec["b2"]]
        listed = (
            await client.get("/api/v1/audit", params={"action": "vault.*"}, headers=admin.headers)
        ).json()["items"]
        assert lines == list(reversed(listed))
        (record,) = await audits(sessionmaker, "audit.export")
        assert record.details == {"reason": "incident 42", "filters": {"action": "vault.*"}}
        assert record.actor == "user:root"
        for body in (
            {"reason": "no"},
            {"reason": "fine reason", "filters": {"nope": 1}},
            {"reason": "fine reason", "filters": {"since": "2026-01-01T00:00:00"}},
        ):
            refused = await client.post("/api/v1/audit/export", json=body, headers=admin.headers)
            assert refused.status_code == 422, body
        assert len(await audits(sessionmaker, "audit.export")) == 1

    async def test_only_audit_export_may_export(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """An auditor's token (audit:read) is refused with 403 and audited."""
        auditor_creds = await user_with_role(client, sessionmaker, security, "auditor")
        refused = await client.post(
            "/api/v1/audit/export", json={"reason": "curious"}, headers=auditor_creds.headers
        )
        assert refused.status_code == 403
        assert await audits(sessionmaker, "audit.export") == []
        (denied,) = await audits(sessionmaker, "auth.denied")
        assert denied.details["permission"] == "audit:export"
