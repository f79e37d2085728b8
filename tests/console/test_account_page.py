"""The account page: what it shows of one account (state, session, counters, timeline,
groups, replies) and its actions, each the API twin's service with the same permission and
the same audit record, through the real app on both databases."""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telethon.sessions import StringSession

from tests.console.conftest import HTML, Browser, browser_for
from tests.factories import (
    DEFAULT_PASSWORD,
    FACTORY_CONTEXT,
    Credentials,
    account_row,
    audits,
    auth_key,
    join_groups,
    login,
    make_accounts,
    make_playbook,
    observe,
    telethon_file,
    telethon_string,
)
from tgfleet.account import groups as account_groups
from tgfleet.auth.service import Security
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountEvent, AccountGroup, AccountState, DesiredState

XSS = "<img src=x onerror=alert(1)>"
_EVENT = re.compile(
    r'<tr data-event="\d+">.*?<span class="event-message">([^<]*)</span>', re.DOTALL
)
_FLASH = re.compile(r'<div class="toast (\w+)" data-flash>([^<]*)</div>')


def shown(page: str, name: str) -> str:
    """The text inside the element ``data-testid=name`` (tags stripped)."""
    found = re.search(rf'<(\w+)[^>]*data-testid="{name}"[^>]*>(.*?)</\1>', page, re.DOTALL)
    assert found, f"no {name} on the page"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(2)).split())


def messages_listed(page: str) -> list[str]:
    return _EVENT.findall(page)


async def flash_after(browser: Browser, response: httpx.Response) -> tuple[str, str]:
    """Follow an action's 303 and read the notice the next page shows."""
    assert response.status_code == 303, response.text
    page = await browser.http.get(response.headers["location"], headers=HTML)
    found = _FLASH.search(page.text)
    assert found, "the page after the action shows no notice"
    return found.group(1), html.unescape(found.group(2))


async def imported(client: httpx.AsyncClient, admin: Credentials, seed: int, label: str) -> str:
    """An account imported through the API from a Telethon string (DC 4)."""
    response = await client.post(
        "/api/v1/accounts/import",
        content=telethon_string(seed, dc_id=4).encode(),
        params={"name": f"{label}.txt", "label": label},
        headers=admin.headers | {"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["ok"], result
    account_id: str = result["account_id"]
    return account_id


async def add_events(
    maker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    events: list[tuple[str, str]],
) -> None:
    """Timeline rows as workers and commands write them: (kind, message), oldest first."""
    async with unit_of_work(maker) as session:
        session.add_all(
            AccountEvent(account_id=account_id, at=utcnow(), kind=kind, message=message, details={})
            for kind, message in events
        )


def reply(
    account_id: uuid.UUID,
    text: str | None,
    *,
    title: str = "Support",
    code: str = "template",
    rule: str | None = "greet",
) -> AccountEvent:
    """A sent reply's timeline event, as the worker's status batch writes it."""
    return AccountEvent(
        account_id=account_id,
        at=utcnow(),
        kind="reply",
        code=code,
        message=text,
        details={"chat_id": -1005, "chat_title": title, "rule": rule},
    )


async def test_the_page_shows_state_reason_session_and_counters(
    operator: Browser,
    client: httpx.AsyncClient,
    admin: Credentials,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    account_id = await imported(client, admin, 11, "support-1")
    await observe(
        sessionmaker,
        uuid.UUID(account_id),
        "quarantined",
        reason="auth_key_unregistered",
        worker_id="w-7",
        last_error_code="AUTH_KEY_UNREGISTERED",
        last_error_message="the key was revoked",
        last_error_at=utcnow(),
        messages_received=12,
        replies_sent=5,
        replies_suppressed=2,
        reconnects=3,
    )
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert page.status_code == 200, page.text
    text = page.text
    assert shown(text, "account-label") == "support-1"
    assert shown(text, "state") == "quarantined auth_key_unregistered"
    assert shown(text, "desired") == "stopped"
    assert shown(text, "worker") == "w-7"
    assert shown(text, "last-error").startswith("AUTH_KEY_UNREGISTERED the key was revoked")
    assert shown(text, "dc") == "4"
    assert shown(text, "vault-version") == "1"
    assert shown(text, "vault-state") == "active"
    assert [shown(text, name) for name in ("received", "sent", "suppressed", "reconnects")] == [
        "12",
        "5",
        "2",
        "3",
    ]
    # Live: the state block is swapped by the account's own SSE event.
    assert f'sse-swap="acct-{account_id}" data-testid="state"' in text
    assert f'sse-connect="/live?view=account&amp;id={account_id}&amp;last_event_id=' in text
    # Never key material: the vault's summary only.
    key = auth_key(11)
    assert key.hex() not in text
    assert telethon_string(11, dc_id=4) not in text
    # An operator may act, but not export.
    assert 'action="/accounts/' + account_id + '/control"' in text
    assert 'data-testid="replace-form"' in text
    assert 'data-testid="export-form"' not in text


async def test_unknown_and_malformed_ids_answer_the_not_found_page(operator: Browser) -> None:
    for path in (f"/accounts/{uuid.uuid4()}", "/accounts/not-an-id", "/accounts/12%2034"):
        page = await operator.http.get(path, headers=HTML)
        assert page.status_code == 404, path
        assert "<h1>Not found</h1>" in page.text
    forged = await operator.post("/accounts/not-an-id/control", {"action": "stop"})
    assert forged.status_code == 404


async def test_the_timeline_pages_and_filters_by_kind(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["timeline-1"])
    events = [("command" if i % 20 == 0 else "state", f"e{i:02d}") for i in range(55)]
    await add_events(sessionmaker, account_id, events)
    first = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    newest_first = [message for _, message in reversed(events)]
    assert messages_listed(first.text) == newest_first[:50]
    older = re.search(r'<a href="([^"]+)"[^>]*rel="next">Older', first.text)
    assert older, "no link to older events"
    second = await operator.http.get(html.unescape(older.group(1)), headers=HTML)
    assert messages_listed(second.text) == newest_first[50:]
    assert 'rel="next">Older' not in second.text

    commands = await operator.http.get(f"/accounts/{account_id}?kind=command", headers=HTML)
    assert messages_listed(commands.text) == ["e40", "e20", "e00"]
    assert '<option value="command" selected>' in commands.text
    # htmx swaps the timeline only.
    part = await operator.http.get(
        f"/accounts/{account_id}?kind=command",
        headers={**HTML, "HX-Request": "true", "HX-Target": "timeline"},
    )
    assert part.status_code == 200
    assert "<html" not in part.text
    assert messages_listed(part.text) == ["e40", "e20", "e00"]
    nothing = await operator.http.get(f"/accounts/{account_id}?kind=reply", headers=HTML)
    assert messages_listed(nothing.text) == []
    assert "No events of this kind." in nothing.text


async def test_a_group_toggle_writes_the_row_and_the_apis_audit_record(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    account_id, twin_id = await make_accounts(sessionmaker, ["groups-1", "groups-2"])
    await join_groups(sessionmaker, account_id, [-1001])
    await join_groups(sessionmaker, twin_id, [-1001])
    playbook_id = await make_playbook(sessionmaker)
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert f'action="/accounts/{account_id}/groups/-1001"' in page.text
    assert f'<option value="{playbook_id}">greeter (v1)</option>' in page.text

    done = await operator.post(
        f"/accounts/{account_id}/groups/-1001",
        {"enabled": "true", "playbook": str(playbook_id), "version": "1"},
    )
    level, text = await flash_after(operator, done)
    assert (level, text) == ("ok", "Group -1001: replies on.")
    async with unit_of_work(sessionmaker) as session:
        group = await session.get(AccountGroup, (account_id, -1001))
        assert group is not None
        assert (group.enabled, group.playbook_id, group.playbook_version) == (
            True,
            playbook_id,
            1,
        )

    # The API's PUT by the same user, on the twin account: the same audit record.
    token = await login(client, operator.username, DEFAULT_PASSWORD)
    api = await client.put(
        f"/api/v1/accounts/{twin_id}/groups/-1001",
        json={"enabled": True, "playbook_id": str(playbook_id), "playbook_version": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 200, api.text
    console_record, api_record = await audits(sessionmaker, "account.group.update")
    assert console_record.actor == api_record.actor == "user:otto"
    assert console_record.target == f"account:{account_id}"
    assert api_record.target == f"account:{twin_id}"
    assert console_record.details == api_record.details
    assert console_record.details == {
        "actor": "user:otto",
        "chat_id": -1001,
        "enabled": True,
        "playbook_id": str(playbook_id),
        "playbook_version": 1,
        "created": False,
        "result": "enabled",
    }

    # Off again: the row says so, and the reason shown is the operator's.
    off = await operator.post(f"/accounts/{account_id}/groups/-1001", {"playbook": ""})
    assert (await flash_after(operator, off)) == ("ok", "Group -1001: replies off.")
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert shown(page.text, "disabled-reason").startswith("operator")


async def test_enabling_a_group_without_a_playbook_shows_the_error_and_writes_nothing(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["groups-3"])
    await join_groups(sessionmaker, account_id, [-1002])
    refused = await operator.post(
        f"/accounts/{account_id}/groups/-1002", {"enabled": "true", "playbook": ""}
    )
    level, text = await flash_after(operator, refused)
    assert level == "bad"
    assert text == (
        "Group -1002 not changed: assign a playbook before enabling replies in a group."
    )
    bad_version = await operator.post(
        f"/accounts/{account_id}/groups/-1002",
        {"enabled": "true", "playbook": str(await make_playbook(sessionmaker)), "version": "9"},
    )
    level, text = await flash_after(operator, bad_version)
    assert level == "bad"
    assert "has no version 9" in text
    async with unit_of_work(sessionmaker) as session:
        group = await session.get(AccountGroup, (account_id, -1002))
        assert group is not None
        assert (group.enabled, group.playbook_id) == (False, None)
    assert await audits(sessionmaker, "account.group.update") == []


async def test_start_and_stop_on_the_page_act_and_audit_as_the_api(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    account_id, twin_id = await make_accounts(sessionmaker, ["ctl-1", "ctl-2"], running=False)
    started = await operator.post(f"/accounts/{account_id}/control", {"action": "start"})
    level, text = await flash_after(operator, started)
    assert (level, text) == ("ok", "start: asked; the account is now wanted running.")
    assert (await account_row(sessionmaker, account_id)).desired_state is DesiredState.RUNNING
    stopped = await operator.post(f"/accounts/{account_id}/control", {"action": "stop"})
    assert stopped.status_code == 303
    assert (await account_row(sessionmaker, account_id)).desired_state is DesiredState.STOPPED

    token = await login(client, operator.username, DEFAULT_PASSWORD)
    for action in ("start", "stop"):
        api = await client.post(
            f"/api/v1/accounts/{twin_id}/{action}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert api.status_code == 200, api.text
    for action in ("start", "stop"):
        console_record, api_record = await audits(sessionmaker, f"account.{action}")
        assert console_record.actor == api_record.actor == "user:otto"
        assert console_record.target == f"account:{account_id}"
        assert {**console_record.details, "label": "ctl-2"} == api_record.details
    bad = await operator.post(f"/accounts/{account_id}/control", {"action": "explode"})
    assert bad.status_code == 422


async def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused_and_audited(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["ro-1"], running=True)
    await join_groups(sessionmaker, account_id, [-1003])
    page = await console_viewer.http.get(f"/accounts/{account_id}", headers=HTML)
    assert page.status_code == 200
    for form in ("/control", "/groups/-1003", "/session", "/session/export"):
        assert f'action="/accounts/{account_id}{form}' not in page.text
    forged = await console_viewer.post(f"/accounts/{account_id}/control", {"action": "stop"})
    assert forged.status_code == 403
    assert (await account_row(sessionmaker, account_id)).desired_state is DesiredState.RUNNING
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert denied.actor == "user:vera"
    assert denied.target == "POST /accounts/{account_id}/control"
    assert denied.details == {"permission": "account:control", "role": "viewer"}


async def test_export_needs_the_permission_and_a_reason_and_gives_the_apis_file(
    operator: Browser,
    client: httpx.AsyncClient,
    admin: Credentials,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> None:
    account_id = await imported(client, admin, 21, "export-1")
    url = f"/accounts/{account_id}/session/export"
    forged = await operator.post(url, {"format": "telethon-string", "reason": "just looking"})
    assert forged.status_code == 403
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert denied.actor == "user:otto"
    assert denied.target == "POST /accounts/{account_id}/session/export"
    assert denied.details == {"permission": "session:export", "role": "operator"}

    ada = await browser_for(client, sessionmaker, security, "admin", "ada")
    try:
        page = await ada.http.get(f"/accounts/{account_id}", headers=HTML)
        assert 'data-testid="export-form"' in page.text
        for reason in ("", "  ", "ab"):
            refused = await ada.post(url, {"format": "telethon-string", "reason": reason})
            level, text = await flash_after(ada, refused)
            assert level == "bad"
            assert text.startswith("Export refused: choose a format and give the reason")
        assert await audits(sessionmaker, "session.export") == []

        exported = await ada.post(url, {"format": "telethon-string", "reason": "backup drill"})
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-disposition"] == (
            f'attachment; filename="{account_id}.txt"'
        )
        assert exported.headers["cache-control"] == "no-store"
        assert StringSession(exported.text).auth_key.key == auth_key(21)
        (record,) = await audits(sessionmaker, "session.export")
        assert record.actor == "user:ada"
        assert record.target == f"account:{account_id}"
        assert record.details == {
            "label": "export-1",
            "format": "telethon-string",
            "reason": "backup drill",
        }
        as_file = await ada.post(url, {"format": "telethon", "reason": "backup drill"})
        assert as_file.status_code == 200
        assert as_file.headers["content-type"] == "application/vnd.sqlite3"
        assert as_file.content.startswith(b"SQLite format 3\x00")
        # The API's export by the same user: the same file headers and audit record.
        token = await login(client, "ada", DEFAULT_PASSWORD)
        api = await client.post(
            f"/api/v1/accounts/{account_id}/session/export",
            json={"format": "telethon", "reason": "backup drill"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert api.status_code == 200, api.text
        for header in ("content-type", "content-disposition", "cache-control"):
            assert api.headers[header] == as_file.headers[header]
        _, console_record, api_record = await audits(sessionmaker, "session.export")
        assert (console_record.actor, console_record.target, console_record.details) == (
            api_record.actor,
            api_record.target,
            api_record.details,
        )
    finally:
        await ada.http.aclose()


async def test_oversized_or_malformed_fields_get_a_clear_error_page(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["big-1"])
    await join_groups(sessionmaker, account_id, [-1006])
    long_kind = await operator.http.get(f"/accounts/{account_id}?kind={'k' * 33}", headers=HTML)
    assert long_kind.status_code == 422
    assert "<h1>Invalid input</h1>" in long_kind.text
    assert "kind" in long_kind.text
    for data in ({"playbook": "x" * 37}, {"version": "1" * 11}):
        refused = await operator.post(f"/accounts/{account_id}/groups/-1006", data)
        assert refused.status_code == 422
        assert "<h1>Invalid input</h1>" in refused.text
    not_a_number = await operator.post(
        f"/accounts/{account_id}/groups/-1006", {"playbook": "", "version": "two"}
    )
    assert await flash_after(operator, not_a_number) == (
        "bad",
        "Choose a playbook from the list and a version number.",
    )
    not_a_chat = await operator.post(f"/accounts/{account_id}/groups/0", {"playbook": ""})
    assert (await flash_after(operator, not_a_chat))[0] == "bad"
    assert await audits(sessionmaker, "account.group.update") == []


async def test_replacing_the_session_by_upload_or_string_and_a_bad_file_named_as_the_api(
    operator: Browser,
    client: httpx.AsyncClient,
    admin: Credentials,
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    account_id = await imported(client, admin, 31, "replace-1")
    new_file = telethon_file(tmp_path, 32, name="fresh.session").read_bytes()

    async def replace(name: str, data: bytes, string: str = "") -> tuple[str, str]:
        """The form as a browser posts it: a file part (empty: none chosen), the string."""
        done = await operator.http.post(
            f"/accounts/{account_id}/session",
            data={"csrf_token": operator.csrf, "string": string},
            files={"file": (name, data, "application/octet-stream")},
            headers=HTML,
        )
        return await flash_after(operator, done)

    level, text = await replace("fresh.session", new_file)
    assert level == "ok"
    assert text.startswith("Session replaced: version 2, telethon;")
    level, text = await replace("", b"", telethon_string(33))
    assert text.startswith("Session replaced: version 3, telethon-string;")
    replaced = await audits(sessionmaker, "session.replace")
    assert [(r.actor, r.result, r.details["file"], r.details["version"]) for r in replaced] == [
        ("user:otto", "success", "fresh.session", 2),
        ("user:otto", "success", "string-1.txt", 3),
    ]
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert shown(page.text, "vault-version") == "3"

    # A file that is no session: refused with the API's own code for it.
    junk = b"this is not a session at all"
    level, text = await replace("junk.session", junk)
    api = await client.put(
        f"/api/v1/accounts/{account_id}/session",
        content=junk,
        params={"name": "junk.session"},
        headers=admin.headers | {"Content-Type": "application/octet-stream"},
    )
    assert api.status_code == 400, api.text
    assert api.json()["error"] == "bad_session_string"
    assert level == "bad"
    assert text.startswith(f"Session not replaced ({api.json()['error']}): ")
    level, text = await replace("fresh.session", new_file, telethon_string(34))
    assert level == "bad"
    assert text == (
        "Session not replaced (one_session_expected): a session replacement takes exactly "
        "one session; the upload held 2"
    )
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert shown(page.text, "vault-version") == "3"

    # No CSRF token, no replacement: refused and audited.
    no_token = await operator.http.post(
        f"/accounts/{account_id}/session",
        files={"file": ("fresh.session", new_file, "application/octet-stream")},
        headers=HTML,
    )
    assert no_token.status_code == 403
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert denied.details == {"reason": "csrf_token", "via": "console"}


async def test_hostile_label_group_title_and_reply_render_as_text(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, [XSS])
    async with unit_of_work(sessionmaker) as session:
        await account_groups.set_group(
            session,
            FACTORY_CONTEXT,
            account_id,
            -1004,
            enabled=False,
            playbook_id=None,
            playbook_version=None,
            title=XSS,
        )
        session.add(reply(account_id, f"hi {XSS}", title=XSS))
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert page.status_code == 200
    assert XSS not in page.text
    escaped = "&lt;img src=x onerror=alert(1)&gt;"
    assert shown(page.text, "account-label") == escaped
    assert page.text.count(escaped) >= 5  # title, label, group, reply's group and text
    assert f"<blockquote>hi {escaped}</blockquote>" in page.text


async def test_the_replies_sent_are_listed_with_their_group(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["replies-1"])
    await observe(sessionmaker, account_id, AccountState.ONLINE.value, replies_sent=2)
    async with unit_of_work(sessionmaker) as session:
        session.add_all(
            [
                reply(account_id, "hi there"),
                reply(account_id, "hello again"),
                reply(account_id, None, code="llm", rule=None),
            ]
        )
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    replies = re.findall(r'<li data-testid="reply">(.*?)</li>', page.text, re.DOTALL)
    assert len(replies) == 3
    assert "(text removed after its retention)" in replies[0]
    assert "<blockquote>hello again</blockquote>" in replies[1]
    assert "<blockquote>hi there</blockquote>" in replies[2]
    assert all("Support" in reply for reply in replies)
    assert "rule greet" in replies[1]


async def test_the_groups_page_by_cursor(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["many-groups"])
    chat_ids = [-2000 - n for n in range(101)]
    await join_groups(sessionmaker, account_id, chat_ids)
    first = await console_viewer.http.get(f"/accounts/{account_id}", headers=HTML)
    listed = [int(chat) for chat in re.findall(r'<tr data-chat="(-?\d+)">', first.text)]
    assert listed == sorted(chat_ids)[:100]
    more = re.search(r'<a href="([^"]+)" rel="next">More groups', first.text)
    assert more, "no link to the next groups"
    second = await console_viewer.http.get(html.unescape(more.group(1)), headers=HTML)
    assert re.findall(r'<tr data-chat="(-?\d+)">', second.text) == [str(sorted(chat_ids)[100])]
    # A viewer reads each group's setting, with no form to change it.
    assert '<span class="badge idle">off</span>' in second.text
    assert '<form method="post" action="/accounts/' not in second.text


async def test_erase_needs_the_permission_and_the_label_typed_and_destroys_the_key(
    operator: Browser,
    client: httpx.AsyncClient,
    admin: Credentials,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> None:
    account_id = await imported(client, admin, 22, "erase-1")
    url = f"/accounts/{account_id}/session/erase"
    page = await operator.http.get(f"/accounts/{account_id}", headers=HTML)
    assert 'data-testid="erase-form"' not in page.text  # an operator may not erase
    forged = await operator.post(url, {"confirm": "erase-1"})
    assert forged.status_code == 403
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert denied.details == {"permission": "session:delete", "role": "operator"}

    ada = await browser_for(client, sessionmaker, security, "admin", "ada")
    try:
        page = await ada.http.get(f"/accounts/{account_id}", headers=HTML)
        assert 'data-testid="erase-form"' in page.text
        for typed in ("", "erase-", "ERASE-1", "other"):
            refused = await ada.post(url, {"confirm": typed})
            level, text = await flash_after(ada, refused)
            assert (level, text) == (
                "bad",
                "Nothing erased: type the account's label, erase-1, to confirm.",
            )
        assert await audits(sessionmaker, "session.delete") == []

        erased = await ada.post(url, {"confirm": " erase-1 "})
        level, text = await flash_after(ada, erased)
        assert level == "ok"
        assert text.startswith("Session erased: its key and ciphertext are destroyed")
        (record,) = await audits(sessionmaker, "session.delete")
        assert (record.actor, record.target) == ("user:ada", f"account:{account_id}")
        page = await ada.http.get(f"/accounts/{account_id}", headers=HTML)
        assert 'data-testid="vault-state" data-state="erased"' in page.text
        assert 'data-testid="erase-form"' not in page.text  # nothing left to erase
        again = await ada.post(url, {"confirm": "erase-1"})
        level, text = await flash_after(ada, again)
        assert (level, text) == ("warn", "This account has no session to erase.")
        assert len(await audits(sessionmaker, "session.delete")) == 1
    finally:
        await ada.http.aclose()
