"""The import page: session files, strings and zips through the API import's own service
(the same results, rows and audit records), its guard and CSRF, the upload limit as a page,
and hostile file names rendered as text, through the real app on both databases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.console.conftest import HTML, Browser, browser_for
from tests.factories import audits, telethon_file, telethon_string, user_with_role
from tests.vault.test_archive import make_zip
from tgfleet.app import create_app
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AuditRecord

XSS = "<img src=x onerror=alert(1)>"
_ROW = re.compile(
    r'<tr data-result="([^"]+)">\s*<th scope="row">([^<]*)</th>.*?'
    r'<td>(?:<a href="/accounts/([0-9a-f-]+)">([^<]*)</a>)?</td>',
    re.DOTALL,
)


def result_rows(page: str) -> list[tuple[str, str, str, str]]:
    """(code, file name, account id, label) of every row of the result table."""
    return [(code, name, account_id, label) for code, name, account_id, label in _ROW.findall(page)]


async def labels_in_db(maker: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    async with unit_of_work(maker) as session:
        accounts = (await session.execute(select(Account))).scalars().all()
        return {str(account.id): account.label for account in accounts}


def shape(record: AuditRecord) -> tuple[Any, ...]:
    """An import's audit record without what names this upload (user, file, label, id)."""
    details = {
        key: value for key, value in (record.details or {}).items() if key not in {"file", "label"}
    }
    target = record.target.split(":", 1)[0]
    return (record.action, record.result, target, sorted(details.items()))


def upload_of(tmp_path: Path, seeds: tuple[int, int, int]) -> list[tuple[str, Any]]:
    """A session file, and a zip with a good session file and a bad one."""
    single, zipped, _ = seeds
    archive = make_zip(
        {
            f"batch/acct{zipped}.session": telethon_file(tmp_path, zipped).read_bytes(),
            "batch/notes.session": b"not a session at all",
        }
    )
    return [
        ("files", (f"acct{single}.session", telethon_file(tmp_path, single).read_bytes())),
        ("files", (f"batch{zipped}.zip", archive)),
    ]


async def test_files_and_a_zip_import_as_the_api_does(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
    tmp_path: Path,
) -> None:
    form = await operator.http.get("/import", headers=HTML)
    assert form.status_code == 200
    assert 'enctype="multipart/form-data"' in form.text
    assert 'type="file" name="files" multiple' in form.text

    page = await operator.post("/import", files=upload_of(tmp_path, (1, 2, 0)))
    assert page.status_code == 200, page.text
    rows = result_rows(page.text)
    assert [(code, name, label) for code, name, _, label in rows] == [
        ("imported", "acct1.session", "acct1"),
        ("imported", "batch/acct2.session", "acct2"),
        ("bad_session_string", "batch/notes.session", ""),
    ]
    assert 'data-testid="import-summary"><strong>2</strong> imported, <strong>1</strong>' in (
        page.text
    )
    # The badge names the code in words; the code stays on the element.
    assert 'data-code="bad_session_string">bad session string</span>' in page.text
    # The accounts exist, under the ids the rows link to.
    assert await labels_in_db(sessionmaker) == {rows[0][2]: "acct1", rows[1][2]: "acct2"}
    # "acct" selects exactly the two new accounts: the table link filters on it.
    assert 'href="/accounts?label=acct" role="button"' in page.text
    # The toast says it too.
    assert "2 imported, 1 failed." in page.text

    console_records = await audits(sessionmaker, "session.import")
    assert [(r.actor, r.result, r.target) for r in console_records] == [
        ("user:otto", "success", f"account:{rows[0][2]}"),
        ("user:otto", "success", f"account:{rows[1][2]}"),
        ("user:otto", "failure", "vault"),
    ]
    assert console_records[0].details == {
        "file": "acct1.session",
        "label": "acct1",
        "format": "telethon",
        "dc_id": 2,
        "kek_id": console_records[0].details["kek_id"],
    }

    # The API twin, the same upload (other keys): the same results and audit records.
    api_user = await user_with_role(client, sessionmaker, security, "operator", username="api")
    report = await client.post(
        "/api/v1/accounts/import", files=upload_of(tmp_path, (3, 4, 0)), headers=api_user.headers
    )
    assert report.status_code == 200, report.text
    api_codes = [r["error"] or "imported" for r in report.json()["results"]]
    assert api_codes == [code for code, *_ in rows]
    api_records = (await audits(sessionmaker, "session.import"))[3:]
    assert [r.actor for r in api_records] == ["user:api"] * 3
    assert [shape(r) for r in api_records] == [shape(r) for r in console_records]
    assert api_records[2].details == console_records[2].details  # the same file, same error
    # Now "acct" selects older accounts too: the rows link each new one, no filter link.
    more = [
        ("files", (f"acct{seed}.session", telethon_file(tmp_path, seed).read_bytes()))
        for seed in (7, 8)
    ]
    again = await operator.post("/import", files=more)
    assert [row[0] for row in result_rows(again.text)] == ["imported", "imported"]
    assert "/accounts?label=" not in again.text
    for _, _, account_id, label in result_rows(again.text):
        assert f'<a href="/accounts/{account_id}">{label}</a>' in again.text


async def test_pasted_strings_import_one_a_line(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    strings = f"{telethon_string(30)}\n\n  {telethon_string(31)}  \nnot-a-session\n"
    no_file = [("files", ("", b""))]  # the file input left empty, as a browser sends it
    page = await operator.post("/import", {"strings": strings}, files=no_file)
    assert page.status_code == 200, page.text
    assert [(code, name) for code, name, _, _ in result_rows(page.text)] == [
        ("imported", "string-1.txt"),
        ("imported", "string-2.txt"),
        ("bad_session_string", "string-3.txt"),
    ]
    assert sorted((await labels_in_db(sessionmaker)).values()) == ["string-1", "string-2"]


async def test_an_empty_form_asks_for_a_file(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # A file input left empty: a part without a file name or content, as browsers send it.
    empty = await operator.post("/import", {"strings": " \n"}, files=[("files", ("", b""))])
    assert empty.status_code == 303
    assert empty.headers["location"] == "/import"
    shown = await operator.http.get("/import", headers=HTML)
    assert "Choose a file or paste a session string first." in shown.text
    assert await audits(sessionmaker, "session.import") == []


async def test_a_hostile_file_name_renders_as_text(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    files = [
        ("files", (f"{XSS}.session", telethon_file(tmp_path, 40).read_bytes())),
        ("files", (f"{XSS}-bad.session", b"junk")),
    ]
    page = await operator.post("/import", files=files)
    assert page.status_code == 200
    assert XSS not in page.text
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    assert f'<th scope="row">{escaped}.session</th>' in page.text
    assert f'<th scope="row">{escaped}-bad.session</th>' in page.text
    assert list((await labels_in_db(sessionmaker)).values()) == [XSS]
    assert f">{escaped}</a>" in page.text  # the label links to its account, escaped


async def test_a_viewer_has_no_import_page_and_a_forged_post_is_refused(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    overview = await console_viewer.http.get("/", headers=HTML)
    assert 'href="/import"' not in overview.text
    refused = await console_viewer.http.get("/import", headers=HTML)
    assert refused.status_code == 403
    assert "session:import" in refused.text
    forged = await console_viewer.post(
        "/import", files=[("files", ("v.session", telethon_file(tmp_path, 50).read_bytes()))]
    )
    assert forged.status_code == 403
    assert "<html" in forged.text
    denied = await audits(sessionmaker, "auth.denied")
    assert [(r.actor, r.target, r.details) for r in denied] == [
        ("user:vera", "GET /import", {"permission": "session:import", "role": "viewer"}),
        ("user:vera", "POST /import", {"permission": "session:import", "role": "viewer"}),
    ]
    assert await labels_in_db(sessionmaker) == {}
    assert await audits(sessionmaker, "session.import") == []


async def test_a_post_without_the_csrf_token_is_refused(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    files = [("files", ("c.session", telethon_file(tmp_path, 60).read_bytes()))]
    for form in ({}, {"csrf_token": "not-the-token"}):
        refused = await operator.http.post("/import", data=form, files=files, headers=HTML)
        assert refused.status_code == 403
        assert "reload the page" in refused.text
    denied = await audits(sessionmaker, "auth.denied")
    assert [(r.actor, r.target, r.details["reason"]) for r in denied] == [
        ("user:otto", "POST /import", "csrf_token")
    ] * 2
    assert await labels_in_db(sessionmaker) == {}
    # The X-CSRF-Token header (htmx's) is as good as the field.
    taken = await operator.http.post(
        "/import", files=files, headers={**HTML, "X-CSRF-Token": operator.csrf}
    )
    assert result_rows(taken.text)[0][:2] == ("imported", "c.session")


def multipart(fields: dict[str, str], name: str, data: bytes, boundary: str) -> list[bytes]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return [*parts, head, data, f"\r\n--{boundary}--\r\n".encode()]


async def test_an_upload_over_the_limit_gets_a_413_page(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path / "data", import_max_upload_bytes=4096)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            browser = await browser_for(
                http, app.state.sessionmaker, app.state.security, "operator", "otto"
            )
            try:
                page = await browser.post("/import", files=[("files", ("big.zip", b"x" * 10_000))])
                assert page.status_code == 413
                assert "<h1>Too large</h1>" in page.text
                assert "larger than the limit of 4096 bytes" in page.text
                # Streamed without a length: refused as it arrives, and audited as the API's.
                boundary = "tgfleetboundary"
                chunks = multipart(
                    {"csrf_token": browser.csrf}, "big.session", b"x" * 10_000, boundary
                )

                async def body(parts: list[bytes]) -> AsyncIterator[bytes]:
                    for chunk in parts:
                        yield chunk

                headers = {**HTML, "Content-Type": f"multipart/form-data; boundary={boundary}"}
                streamed = await browser.http.post("/import", content=body(chunks), headers=headers)
                # Without the CSRF field, the same body is a refused form, not an import.
                forged = multipart({}, "big.session", b"x" * 10_000, boundary)
                refused = await browser.http.post("/import", content=body(forged), headers=headers)
                assert refused.status_code == 403
            finally:
                await browser.http.aclose()
            assert streamed.status_code == 413
            assert "<h1>Too large</h1>" in streamed.text
            records = await audits(app.state.sessionmaker, "session.import")
            assert [(r.actor, r.result, r.target) for r in records] == [
                ("user:otto", "failure", "vault")
            ]
            assert records[0].details["error"] == "import_too_large"
            assert await labels_in_db(app.state.sessionmaker) == {}
