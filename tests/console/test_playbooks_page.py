"""The playbook pages: the list with the groups that use each playbook, creating one, the
editor (problems on their lines, nothing saved; a fix saves the next version), Check, the
diff of two versions, pinning a group, the dry run; each action the API twin's service with
the same permission and audit record, through the real app on both databases."""

from __future__ import annotations

import asyncio
import html
import re
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.console.test_account_page import flash_after
from tests.console.test_account_page import shown as shown_html
from tests.factories import (
    DEFAULT_PASSWORD,
    FACTORY_CONTEXT,
    PLAYBOOK_SOURCE,
    audits,
    join_groups,
    login,
    make_accounts,
    make_playbook,
)
from tgfleet.account import groups as account_groups
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountGroup, Playbook
from tgfleet.playbook import service as playbook_service

TYPO = PLAYBOOK_SOURCE.replace("templates:", "templtes:")
FIXED_V2 = PLAYBOOK_SOURCE.replace('"hi there"', '"hello again"')
XSS = "<img src=x onerror=alert(1)>"
_PROBLEM = re.compile(r'<li data-testid="problem"(?: data-line="(\d+)")?>(.*?)</li>', re.DOTALL)


def shown(page: str, name: str) -> str:
    """The text of the element ``data-testid=name``, as a person reads it."""
    return html.unescape(shown_html(page, name))


def problems_listed(page: str) -> list[tuple[int | None, str]]:
    """The problems a page lists: (line, text without tags)."""
    found = []
    for line, body in _PROBLEM.findall(page):
        text = html.unescape(" ".join(re.sub(r"<[^>]+>", " ", body).split()))
        found.append((int(line) if line else None, text))
    return found


async def swap(browser: Browser, url: str, data: dict[str, str], target: str) -> httpx.Response:
    """An htmx POST that swaps the element ``target`` (the form's fields and its token)."""
    headers = HTML | {"HX-Request": "true", "HX-Target": target}
    return await browser.http.post(url, data={"csrf_token": browser.csrf, **data}, headers=headers)


def textarea_of(page: str, editor_id: str) -> str:
    found = re.search(rf'<textarea id="{editor_id}-source"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert found, "no editor on the page"
    return html.unescape(found.group(1))


async def saved(maker: async_sessionmaker[AsyncSession], playbook_id: uuid.UUID) -> Playbook:
    async with unit_of_work(maker) as session:
        playbook = await session.get(Playbook, playbook_id)
        assert playbook is not None
        return playbook


async def new_version(
    maker: async_sessionmaker[AsyncSession], playbook_id: uuid.UUID, source: str
) -> None:
    async with unit_of_work(maker) as session:
        await playbook_service.update(session, FACTORY_CONTEXT, playbook_id, source=source)


async def use_playbook(
    maker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    chat_id: int,
    playbook_id: uuid.UUID,
    version: int | None = None,
    *,
    enabled: bool = True,
    title: str | None = None,
) -> None:
    async with unit_of_work(maker) as session:
        await account_groups.set_group(
            session,
            FACTORY_CONTEXT,
            account_id,
            chat_id,
            enabled=enabled,
            playbook_id=playbook_id,
            playbook_version=version,
            title=title,
        )


async def group_row(
    maker: async_sessionmaker[AsyncSession], account_id: uuid.UUID, chat_id: int
) -> AccountGroup:
    async with unit_of_work(maker) as session:
        group = await session.get(AccountGroup, (account_id, chat_id))
        assert group is not None
        return group


async def test_the_list_shows_versions_and_the_groups_using_each(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    greeter = await make_playbook(sessionmaker, "greeter")
    idle = await make_playbook(sessionmaker, "idle")
    await new_version(sessionmaker, greeter, FIXED_V2)
    alpha, beta = await make_accounts(sessionmaker, ["alpha", "beta"])
    await join_groups(sessionmaker, alpha, [-1001])
    await join_groups(sessionmaker, beta, [-1002])
    await use_playbook(sessionmaker, alpha, -1001, greeter, title="Support")
    await use_playbook(sessionmaker, beta, -1002, greeter, 1, enabled=False)

    page = await operator.http.get("/playbooks", headers=HTML)
    assert page.status_code == 200, page.text
    rows = re.findall(r'<tr data-playbook="([^"]+)">(.*?)</tr>', page.text, re.DOTALL)
    assert [row_id for row_id, _ in rows] == [str(greeter), str(idle)]  # by name
    greeter_row, idle_row = rows[0][1], rows[1][1]
    assert shown(greeter_row, "latest") == "v2"
    assert shown(greeter_row, "versions") == "2"
    assert shown(greeter_row, "used-by") == "alpha · Support · latest beta · -1002 · pinned to v1"
    assert shown(idle_row, "used-by") == "no group"
    assert '<a href="/playbooks"' in page.text  # the nav entry
    assert 'data-testid="new-form"' in page.text


async def test_creating_a_playbook_is_audited_as_the_apis(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await operator.post(
        "/playbooks", {"name": "welcome", "source": PLAYBOOK_SOURCE, "description": "hi"}
    )
    assert created.status_code == 303, created.text
    playbook_id = uuid.UUID(created.headers["location"].rsplit("/", 1)[1])
    assert await flash_after(operator, created) == ("ok", "Playbook welcome created: version 1.")
    playbook = await saved(sessionmaker, playbook_id)
    assert (playbook.name, playbook.description, playbook.latest_version) == ("welcome", "hi", 1)

    token = await login(client, operator.username, DEFAULT_PASSWORD)
    api = await client.post(
        "/api/v1/playbooks",
        json={"name": "welcome-api", "source": PLAYBOOK_SOURCE},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 201, api.text
    console_record, api_record = await audits(sessionmaker, "playbook.create")
    assert console_record.actor == api_record.actor == "user:otto"
    assert console_record.target == f"playbook:{playbook_id}"
    assert console_record.details == {"name": "welcome", "version": 1, "rules": 1}
    assert api_record.details == {"name": "welcome-api", "version": 1, "rules": 1}

    # The same name again: the form comes back with the domain's reason, nothing written.
    again = await operator.post("/playbooks", {"name": "welcome", "source": PLAYBOOK_SOURCE})
    assert again.status_code == 422
    assert problems_listed(again.text) == [(None, "name a playbook named 'welcome' already exists")]
    assert textarea_of(again.text, "new") == PLAYBOOK_SOURCE
    assert len(await audits(sessionmaker, "playbook.create")) == 2


async def test_a_typo_is_shown_at_its_line_nothing_saved_and_the_fix_saves_v2(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    page = await operator.http.get(f"/playbooks/{playbook_id}", headers=HTML)
    assert textarea_of(page.text, str(playbook_id)) == PLAYBOOK_SOURCE
    assert f'id="{playbook_id}-L6">6</li>' in page.text  # the gutter numbers every line

    refused = await operator.post(f"/playbooks/{playbook_id}", {"source": TYPO})
    assert refused.status_code == 422
    assert problems_listed(refused.text) == [
        (6, "line 6 rules[0].reply.templtes unknown key 'templtes' (did you mean 'templates'?)")
    ]
    assert "1 problem: nothing was saved." in refused.text
    assert (
        f'<li id="{playbook_id}-L6" class="bad" title="rules[0].reply.templtes: unknown key '
        '&#39;templtes&#39; (did you mean &#39;templates&#39;?)">6</li>'
    ) in refused.text
    assert f'<li id="{playbook_id}-L5">5</li>' in refused.text
    assert f'href="#{playbook_id}-L6" data-goto-line="6"' in refused.text
    assert textarea_of(refused.text, str(playbook_id)) == TYPO  # the text is kept
    assert 'aria-invalid="true"' in refused.text
    assert (await saved(sessionmaker, playbook_id)).latest_version == 1
    assert await audits(sessionmaker, "playbook.update") == []

    # A browser posts CRLF line ends; the version is stored with the YAML's own LF.
    fixed = await operator.post(
        f"/playbooks/{playbook_id}", {"source": FIXED_V2.replace("\n", "\r\n")}
    )
    assert await flash_after(operator, fixed) == ("ok", "Saved as version 2.")
    async with unit_of_work(sessionmaker) as session:
        latest = await playbook_service.get_version(session, playbook_id)
    assert (latest.version, latest.source, latest.created_by) == (2, FIXED_V2, "user:otto")

    # The API's PUT by the same user: the same audit record (but the version).
    token = await login(client, operator.username, DEFAULT_PASSWORD)
    api = await client.put(
        f"/api/v1/playbooks/{playbook_id}",
        json={"source": PLAYBOOK_SOURCE},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 200, api.text
    console_record, api_record = await audits(sessionmaker, "playbook.update")
    assert console_record.actor == api_record.actor == "user:otto"
    assert console_record.target == api_record.target == f"playbook:{playbook_id}"
    assert console_record.details == {"name": "greeter", "version": 2, "rules": 1}
    assert api_record.details == {"name": "greeter", "version": 3, "rules": 1}

    # The same text as the latest: said so, nothing written.
    same = await operator.post(f"/playbooks/{playbook_id}", {"source": PLAYBOOK_SOURCE})
    level, text = await flash_after(operator, same)
    assert (level, text) == ("warn", "the source is the same as version 3; nothing to save")
    assert (await saved(sessionmaker, playbook_id)).latest_version == 3


async def test_check_answers_the_problems_block_and_saves_nothing(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    target = f"problems-{playbook_id}"
    block = await swap(operator, f"/playbooks/{playbook_id}/check", {"source": TYPO}, target)
    assert block.status_code == 200, block.text
    assert block.text.lstrip().startswith(f'<div id="{target}"')
    assert "<html" not in block.text
    assert "1 problem found." in block.text
    assert [line for line, _ in problems_listed(block.text)] == [6]

    good = await swap(operator, f"/playbooks/{playbook_id}/check", {"source": FIXED_V2}, target)
    assert "No problems: the playbook compiles." in good.text

    # Without JavaScript: the whole page, the text as it was.
    plain = await operator.post(f"/playbooks/{playbook_id}/check", {"source": TYPO})
    assert plain.status_code == 200
    assert textarea_of(plain.text, str(playbook_id)) == TYPO
    assert [line for line, _ in problems_listed(plain.text)] == [6]

    # A new playbook's form has its own Check.
    new = await swap(
        operator,
        "/playbooks/check",
        {"name": "draft", "source": "rules:\n  - name: x\n"},
        "problems-new",
    )
    assert new.status_code == 200
    assert new.text.lstrip().startswith('<div id="problems-new"')
    assert [line for line, _ in problems_listed(new.text)] == [2, 2]
    assert (await saved(sessionmaker, playbook_id)).latest_version == 1
    assert await audits(sessionmaker, "playbook.update") == []
    created = await audits(sessionmaker, "playbook.create")
    assert [record.actor for record in created] == ["cli:factory"]  # make_playbook's


async def test_the_diff_of_two_versions_side_by_side(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    bye = "  - name: bye\n    when: {keywords: [bye]}\n    reply: {templates: [ciao]}\n"
    added = FIXED_V2 + bye
    await new_version(sessionmaker, playbook_id, added)
    page = await operator.http.get(f"/playbooks/{playbook_id}/diff?old=1&new=2", headers=HTML)
    assert page.status_code == 200, page.text
    rows = re.findall(
        r'<tr class="(\w+)" data-kind="\w+">\s*<td class="mark">(.*?)</td>\s*'
        r'<td class="num">(\d*)</td>\s*<td class="old"><code>(.*?)</code></td>\s*'
        r'<td class="num">(\d*)</td>\s*<td class="new"><code>(.*?)</code></td>',
        page.text,
        re.DOTALL,
    )
    marks = {kind: re.sub(r"<[^>]+>", "", mark) for kind, mark, *_ in rows}
    assert marks == {"same": "", "changed": "~changed", "added": "+added"}
    changed = [row for row in rows if row[0] == "changed"]
    assert [(r[2], html.unescape(r[3]), r[4], html.unescape(r[5])) for r in changed] == [
        ("6", '      templates: ["hi there"]', "6", '      templates: ["hello again"]')
    ]
    assert [(r[4], html.unescape(r[5])) for r in rows if r[0] == "added"] == [
        ("7", "  - name: bye"),
        ("8", "    when: {keywords: [bye]}"),
        ("9", "    reply: {templates: [ciao]}"),
    ]
    assert shown(page.text, "diff-summary") == "1 changed, 3 added, 0 removed lines"
    # By default: the latest and the one before.
    default = await operator.http.get(f"/playbooks/{playbook_id}/diff", headers=HTML)
    assert shown(default.text, "diff-summary") == "1 changed, 3 added, 0 removed lines"
    # Versions that do not exist or are no numbers: clear errors.
    missing = await operator.http.get(f"/playbooks/{playbook_id}/diff?old=1&new=9", headers=HTML)
    assert missing.status_code == 404
    assert "has no version 9 (versions 1 to 2 exist)" in missing.text
    for query in ("old=two", "old=0", "new=99999999999"):
        bad = await operator.http.get(f"/playbooks/{playbook_id}/diff?{query}", headers=HTML)
        assert bad.status_code == 422, query
        assert "<h1>Invalid input</h1>" in bad.text


async def test_pinning_a_group_and_following_the_latest_again_as_the_api(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    other = await make_playbook(sessionmaker, "other")
    await new_version(sessionmaker, playbook_id, FIXED_V2)
    account_id, twin_id = await make_accounts(sessionmaker, ["pin-1", "pin-2"])
    await join_groups(sessionmaker, account_id, [-1001, -1002])
    await join_groups(sessionmaker, twin_id, [-1001])
    await use_playbook(sessionmaker, account_id, -1001, playbook_id, title="Support")
    await use_playbook(sessionmaker, twin_id, -1001, playbook_id)
    await use_playbook(sessionmaker, account_id, -1002, other)
    page = await operator.http.get(f"/playbooks/{playbook_id}", headers=HTML)
    url = f"/playbooks/{playbook_id}/groups/{account_id}/-1001"
    assert f'action="{url}"' in page.text
    assert f"/groups/{account_id}/-1002" not in page.text  # another playbook's group

    pinned = await operator.post(url, {"version": "1"})
    assert await flash_after(operator, pinned) == ("ok", "Group Support pinned to version 1.")
    group = await group_row(sessionmaker, account_id, -1001)
    assert (group.enabled, group.playbook_id, group.playbook_version) == (True, playbook_id, 1)

    token = await login(client, operator.username, DEFAULT_PASSWORD)
    api = await client.put(
        f"/api/v1/accounts/{twin_id}/groups/-1001",
        json={"enabled": True, "playbook_id": str(playbook_id), "playbook_version": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 200, api.text
    records = await audits(sessionmaker, "account.group.update")
    console_record, api_record = [r for r in records if r.actor == "user:otto"]
    assert console_record.target == f"account:{account_id}"
    assert console_record.details == api_record.details
    assert console_record.details["playbook_version"] == 1

    latest = await operator.post(url, {"version": ""})
    assert await flash_after(operator, latest) == (
        "ok",
        "Group Support now follows the latest version.",
    )
    assert (await group_row(sessionmaker, account_id, -1001)).playbook_version is None

    before = len(await audits(sessionmaker, "account.group.update"))
    for data, why in (
        ({"version": "9"}, "playbook 'greeter' has no version 9 (versions 1 to 2 exist)"),
        ({"version": "two"}, None),
    ):
        refused = await operator.post(url, data)
        level, text = await flash_after(operator, refused)
        assert level == "bad"
        if why:
            assert text == f"Group -1001 not changed: {why}."
        else:
            assert text == "Choose the latest version or a version number."
    wrong = await operator.post(f"/playbooks/{playbook_id}/groups/{account_id}/-1002", {})
    assert await flash_after(operator, wrong) == (
        "bad",
        "Group -1002 not changed: it no longer uses this playbook.",
    )
    unknown = await operator.post(f"/playbooks/{playbook_id}/groups/{account_id}/-1999", {})
    level, text = await flash_after(operator, unknown)
    assert (level, text.startswith("Group -1999 not changed: account ")) == ("bad", True)
    group = await group_row(sessionmaker, account_id, -1002)
    assert (group.playbook_id, group.playbook_version) == (other, None)
    assert len(await audits(sessionmaker, "account.group.update")) == before


async def test_the_dry_run_names_the_rule_and_reply_or_why_none_fires(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A viewer (playbook:read) runs it: it writes nothing."""
    playbook_id = await make_playbook(sessionmaker)
    await new_version(sessionmaker, playbook_id, FIXED_V2)
    url = f"/playbooks/{playbook_id}/dry-run"
    fired = await console_viewer.post(url, {"text": "hello there", "sender_first_name": "Dana"})
    assert fired.status_code == 200, fired.text
    assert shown(fired.text, "dry-run-verdict") == "Rule greet fires (version 2, template)."
    assert shown(fired.text, "dry-run-reply") == "hello again"

    pinned = await console_viewer.post(url, {"text": "hello", "version": "1"})
    assert shown(pinned.text, "dry-run-reply") == "hi there"

    result = "dry-run-result"
    quiet = await swap(console_viewer, url, {"text": "good night"}, result)
    assert quiet.status_code == 200
    assert quiet.text.lstrip().startswith('<div id="dry-run-result"')
    assert shown(quiet.text, "dry-run-verdict") == "No reply (version 2): no_rule_matched"
    assert shown(quiet.text, "dry-run-detail") == "no rule's trigger matched the message"

    for data, error in (
        ({"version": "9"}, "playbook 'greeter' has no version 9 (versions 1 to 2 exist)"),
        ({"chat_id": "general"}, "Group: a whole number"),
        ({"at": "yesterday"}, "message.at: Input should be a valid datetime"),
    ):
        refused = await swap(console_viewer, url, {"text": "hello", **data}, result)
        assert refused.status_code == 200
        assert shown(refused.text, "dry-run-result").startswith(f"Not run: {error}"), data
    for when in ("2026-01-05T09:30", "2026-01-05T09:30:00-05:00", "2026-01-05T09:30Z"):
        at = await swap(console_viewer, url, {"text": "hello", "at": when}, result)
        assert shown(at.text, "dry-run-reply") == "hello again", when
    assert await audits(sessionmaker, "auth.denied") == []


async def test_a_viewer_reads_but_cannot_save_check_or_pin(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    (account_id,) = await make_accounts(sessionmaker, ["ro-1"])
    await join_groups(sessionmaker, account_id, [-1003])
    await use_playbook(sessionmaker, account_id, -1003, playbook_id)
    listing = await console_viewer.http.get("/playbooks", headers=HTML)
    assert listing.status_code == 200
    assert 'data-testid="new-form"' not in listing.text
    page = await console_viewer.http.get(f"/playbooks/{playbook_id}", headers=HTML)
    assert page.status_code == 200
    assert 'data-testid="editor-form"' not in page.text
    assert re.search(rf'<textarea id="{playbook_id}-source"[^>]* readonly', page.text)
    assert f"/groups/{account_id}/-1003" not in page.text
    assert shown(page.text, "pin") == "latest"
    assert 'data-testid="dry-run-form"' in page.text

    forged = [
        (f"/playbooks/{playbook_id}", {"source": FIXED_V2}, "playbook:write"),
        (f"/playbooks/{playbook_id}/check", {"source": FIXED_V2}, "playbook:write"),
        ("/playbooks", {"name": "mine", "source": FIXED_V2}, "playbook:write"),
        (f"/playbooks/{playbook_id}/groups/{account_id}/-1003", {"version": "1"}, "account:write"),
    ]
    for url, data, _permission in forged:
        refused = await console_viewer.post(url, data)
        assert refused.status_code == 403, url
    denied = await audits(sessionmaker, "auth.denied")
    assert [(r.actor, r.target, r.details) for r in denied] == [
        (
            "user:vera",
            f"POST {route}",
            {"permission": permission, "role": "viewer"},
        )
        for route, permission in (
            ("/playbooks/{playbook_id}", "playbook:write"),
            ("/playbooks/{playbook_id}/check", "playbook:write"),
            ("/playbooks", "playbook:write"),
            ("/playbooks/{playbook_id}/groups/{account_id}/{chat_id}", "account:write"),
        )
    ]
    assert (await saved(sessionmaker, playbook_id)).latest_version == 1
    assert (await group_row(sessionmaker, account_id, -1003)).playbook_version is None


async def test_hostile_sources_and_ids_get_clear_answers(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    url = f"/playbooks/{playbook_id}"
    cases = {
        "too big": ("# " + "x" * 300_000 + "\n" + PLAYBOOK_SOURCE, 1, "the limit is 262144 bytes"),
        "too deep": ("rules: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 64"),
        "template": (
            PLAYBOOK_SOURCE.replace('"hi there"', '"{{ sender.first_name "'),
            6,
            "template syntax error",
        ),
    }
    for name, (source, line, words) in cases.items():
        refused = await operator.post(url, {"source": source})
        assert refused.status_code == 422, name
        ((found_line, text),) = problems_listed(refused.text)
        assert (found_line, words in text) == (line, True), (name, text)
    # Past the form's limit (512 KiB): the form's own refusal, not a 500.
    huge = await operator.post(url, {"source": "x" * (512 * 1024 + 1)})
    assert huge.status_code == 422
    assert "<h1>Invalid input</h1>" in huge.text
    assert (await saved(sessionmaker, playbook_id)).latest_version == 1

    # A regex that backtracks for ages: the domain's engine answers promptly.
    bomb = "rules:\n  - name: r\n    when: {regex: '(a+)+$'}\n    reply: {templates: [x]}\n"
    await new_version(sessionmaker, playbook_id, bomb)
    answer = await asyncio.wait_for(
        operator.post(f"{url}/dry-run", {"text": "a" * 4000 + "!"}), timeout=30
    )
    assert answer.status_code == 200
    assert shown(answer.text, "dry-run-verdict").startswith("No reply (version 2):")

    # Hostile text renders as text.
    await new_version(sessionmaker, playbook_id, f"# {XSS}\n{PLAYBOOK_SOURCE}")
    page = await operator.http.get(url, headers=HTML)
    assert XSS not in page.text
    assert html.escape(XSS, quote=False) in page.text

    for bad_id in (str(uuid.uuid4()), "not-an-id"):
        for path in ("", "/diff"):
            missing = await operator.http.get(f"/playbooks/{bad_id}{path}", headers=HTML)
            assert missing.status_code == 404, (bad_id, path)
            assert "<h1>Not found</h1>" in missing.text
        gone = await operator.post(f"/playbooks/{bad_id}", {"source": PLAYBOOK_SOURCE})
        assert gone.status_code == 404
    bad_version = await operator.http.get(f"{url}?version=0", headers=HTML)
    assert bad_version.status_code == 422
    no_version = await operator.http.get(f"{url}?version=7", headers=HTML)
    assert no_version.status_code == 404
    assert "has no version 7" in no_version.text
    long_cursor = await operator.http.get(f"/playbooks?cursor={'c' * 501}", headers=HTML)
    assert long_cursor.status_code == 422


async def test_an_older_version_opens_in_the_editor_and_versions_are_listed(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    playbook_id = await make_playbook(sessionmaker)
    await new_version(sessionmaker, playbook_id, FIXED_V2)
    page = await operator.http.get(f"/playbooks/{playbook_id}?version=1", headers=HTML)
    assert page.status_code == 200
    assert textarea_of(page.text, str(playbook_id)) == PLAYBOOK_SOURCE
    assert "This is version 1; the latest is 2." in shown(page.text, "older-version")
    versions = re.findall(r'<tr data-version="(\d+)">\s*<th scope="row">v\d+', page.text)
    assert versions == ["2", "1"]
    assert "cli:factory" in page.text
    assert f'href="/playbooks/{playbook_id}/diff?old=1&amp;new=2"' in page.text


async def test_the_list_pages_by_cursor(
    console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """51 playbooks: 50 by name, then the last through "Next page"; a viewer who may not
    write sees no form to create one."""
    names = [f"pb-{index:02d}" for index in range(51)]
    for name in names:
        await make_playbook(sessionmaker, name)
    first = await console_viewer.http.get("/playbooks", headers=HTML)
    listed = re.findall(
        r'<tr data-playbook="[^"]+">\s*<th scope="row"><a [^>]*>([^<]+)</a>', first.text
    )
    assert listed == names[:50]
    found = re.search(r'<a href="(/playbooks\?cursor=[^"]+)" rel="next">', first.text)
    assert found
    second = await console_viewer.http.get(html.unescape(found.group(1)), headers=HTML)
    listed = re.findall(
        r'<tr data-playbook="[^"]+">\s*<th scope="row"><a [^>]*>([^<]+)</a>', second.text
    )
    assert listed == ["pb-50"]
    assert 'rel="next"' not in second.text


async def test_a_new_description_alone_is_saved_without_a_new_version(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """As the API's PUT: the same source with another description updates the playbook,
    audited, with no new version; a refused save keeps the description typed."""
    playbook_id = await make_playbook(sessionmaker)
    url = f"/playbooks/{playbook_id}"
    refused = await operator.post(url, {"source": TYPO, "description": "greets <people>"})
    assert refused.status_code == 422
    assert 'name="description" value="greets &lt;people&gt;"' in refused.text
    assert (await saved(sessionmaker, playbook_id)).description == ""

    described = await operator.post(
        url, {"source": PLAYBOOK_SOURCE, "description": "greets <people>"}
    )
    assert await flash_after(operator, described) == (
        "ok",
        "Description saved; the source is the same as version 1.",
    )
    playbook = await saved(sessionmaker, playbook_id)
    assert (playbook.description, playbook.latest_version) == ("greets <people>", 1)
    (record,) = await audits(sessionmaker, "playbook.update")
    assert (record.actor, record.details) == (
        "user:otto",
        {"name": "greeter", "version": 1, "description": True},
    )
    page = await operator.http.get(url, headers=HTML)
    assert 'name="description" value="greets &lt;people&gt;"' in page.text
