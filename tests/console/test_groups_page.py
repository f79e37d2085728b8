"""The groups page: every group the fleet's accounts are in, by chat, with each account's
setting, playbook, recent replies and why a group was switched off; its filters and paging;
and bulk enable/disable through a preview of exactly the pairs that change, applied by the
API twin's bulk service (same permission, same audit record), on both databases."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.console.test_account_page import flash_after
from tests.factories import FACTORY_CONTEXT, audits, join_groups, make_accounts, make_playbook
from tgfleet.account import groups as account_groups
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountEvent, AccountGroup

Maker = async_sessionmaker[AsyncSession]
XSS = "<img src=x onerror=alert(1)>"


async def set_group(maker: Maker, account_id: uuid.UUID, chat_id: int, **kwargs: Any) -> None:
    settings: dict[str, Any] = {"playbook_id": None, "playbook_version": None, "title": None}
    settings.update(kwargs)
    async with unit_of_work(maker) as session:
        await account_groups.set_group(session, FACTORY_CONTEXT, account_id, chat_id, **settings)


async def settings_of(maker: Maker) -> dict[tuple[uuid.UUID, int], tuple[bool, uuid.UUID | None]]:
    async with unit_of_work(maker) as session:
        rows = (await session.execute(select(AccountGroup))).scalars()
        return {(r.account_id, r.chat_id): (r.enabled, r.playbook_id) for r in rows}


def chats_listed(page: str) -> list[int]:
    return [int(chat) for chat in re.findall(r'<tbody data-chat="(-?\d+)">', page)]


def pairs_listed(page: str) -> list[str]:
    return re.findall(r'<tr data-pair="([^"]+)">', page)


def row_of(page: str, pair: str) -> str:
    found = re.search(rf'<tr data-pair="{re.escape(pair)}">(.*?)</tr>', page, re.DOTALL)
    assert found, f"no row for {pair}"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def changes_previewed(page: str) -> list[str]:
    return re.findall(r'<tr data-change="([^"]+)">', page)


async def fleet(maker: Maker) -> tuple[list[uuid.UUID], uuid.UUID]:
    """shop-1 and shop-2 in the Shop chat (-100; shop-1's switched off by a group error),
    shop-2 also in Support (-200, replies on with the greeter pinned at v1, two replies
    sent)."""
    ids = await make_accounts(maker, ["shop-1", "shop-2"])
    playbook_id = await make_playbook(maker)
    await set_group(maker, ids[0], -100, enabled=False, title="Shop")
    await set_group(maker, ids[1], -100, enabled=False, title="Shop")
    await set_group(
        maker,
        ids[1],
        -200,
        enabled=True,
        title="Support",
        playbook_id=playbook_id,
        playbook_version=1,
    )
    async with unit_of_work(maker) as session:
        row = await session.get(AccountGroup, (ids[0], -100))
        assert row is not None
        row.disabled_reason = "write_forbidden"
        row.disabled_at = utcnow()
        session.add_all(
            AccountEvent(
                account_id=ids[1],
                at=utcnow(),
                kind="reply",
                code="template",
                message=f"hello {n}",
                details={"chat_id": -200, "chat_title": "Support", "rule": "greet"},
            )
            for n in range(2)
        )
    return ids, playbook_id


async def test_groups_by_chat_with_settings_playbook_replies_and_reason(
    operator: Browser, sessionmaker: Maker
) -> None:
    ids, _ = await fleet(sessionmaker)
    page = await operator.http.get("/groups", headers=HTML)
    assert page.status_code == 200, page.text
    assert chats_listed(page.text) == [-200, -100]
    assert pairs_listed(page.text) == [f"{ids[1]}:-200", f"{ids[0]}:-100", f"{ids[1]}:-100"]
    assert row_of(page.text, f"{ids[1]}:-200").startswith("shop-2 on greeter v1 2 last")
    assert row_of(page.text, f"{ids[0]}:-100").startswith("shop-1 off none 0 write_forbidden")
    assert row_of(page.text, f"{ids[1]}:-100") == "shop-2 off none 0"
    assert 'href="/accounts?group=-100"' in page.text
    assert 'action="/groups/preview"' in page.text


async def test_filters_by_title_and_replies_on_or_off(
    operator: Browser, sessionmaker: Maker
) -> None:
    ids, _ = await fleet(sessionmaker)
    shop = await operator.http.get("/groups", params={"q": "SHO"}, headers=HTML)
    assert chats_listed(shop.text) == [-100]
    on = await operator.http.get("/groups", params={"state": "enabled"}, headers=HTML)
    assert pairs_listed(on.text) == [f"{ids[1]}:-200"]
    off = await operator.http.get("/groups", params={"state": "disabled"}, headers=HTML)
    assert pairs_listed(off.text) == [f"{ids[0]}:-100", f"{ids[1]}:-100"]
    none = await operator.http.get("/groups", params={"q": "%"}, headers=HTML)
    assert chats_listed(none.text) == []
    assert "No group matches this filter." in none.text
    bad = await operator.http.get("/groups", params={"state": "maybe"}, headers=HTML)
    assert bad.status_code == 422


async def test_pages_by_chat_id(operator: Browser, sessionmaker: Maker) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["many"])
    await join_groups(sessionmaker, account_id, [-1000 - n for n in range(51)])
    first = await operator.http.get("/groups", headers=HTML)
    listed = chats_listed(first.text)
    assert listed == sorted(-1000 - n for n in range(51))[:50]
    found = re.search(r'href="(/groups\?cursor=[^"]+)" rel="next"', first.text)
    assert found
    second = await operator.http.get(found.group(1).replace("&amp;", "&"), headers=HTML)
    assert chats_listed(second.text) == [-1000]
    assert 'rel="next"' not in second.text


async def test_a_viewer_reads_but_cannot_change_and_a_forged_post_is_refused(
    console_viewer: Browser, sessionmaker: Maker
) -> None:
    ids, _ = await fleet(sessionmaker)
    page = await console_viewer.http.get("/groups", headers=HTML)
    assert page.status_code == 200
    assert pairs_listed(page.text) == [f"{ids[1]}:-200", f"{ids[0]}:-100", f"{ids[1]}:-100"]
    assert 'action="/groups/preview"' not in page.text
    assert 'name="pair"' not in page.text
    before = await settings_of(sessionmaker)
    forged = await console_viewer.post(
        "/groups/bulk", {"action": "disable", "pair": f"{ids[1]}:-200"}
    )
    assert forged.status_code == 403
    assert await settings_of(sessionmaker) == before
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert denied.actor == "user:vera"
    assert denied.target == "POST /groups/bulk"
    assert denied.details == {"permission": "account:write", "role": "viewer"}
    assert await audits(sessionmaker, "account.group.bulk") == []


async def test_preview_then_confirm_changes_exactly_the_previewed_pairs(
    operator: Browser, sessionmaker: Maker
) -> None:
    """A whole chat and one pair are previewed pair by pair; an account that joins the chat
    after the preview is not touched by the confirmation (it sends the previewed pairs)."""
    ids, playbook_id = await fleet(sessionmaker)
    preview = await operator.post(
        "/groups/preview",
        {
            "action": "enable",
            "chat": "-100",
            "pair": f"{ids[1]}:-200",
            "playbook": str(playbook_id),
            "version": "1",
        },
    )
    assert preview.status_code == 200, preview.text
    assert changes_previewed(preview.text) == [f"{ids[0]}:-100", f"{ids[1]}:-100"]
    assert f'data-unchanged="{ids[1]}:-200"' in preview.text  # already on with greeter v1
    assert "<td>Shop <code>-100</code></td>" in preview.text
    (late,) = await make_accounts(sessionmaker, ["late"])
    await join_groups(sessionmaker, late, [-100])
    confirm = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview.text))
    pairs = re.findall(r'<input type="hidden" name="pair" value="([^"]+)">', preview.text)
    assert pairs == [f"{ids[0]}:-100", f"{ids[1]}:-100"]
    form: dict[str, str | list[str]] = {**confirm, "pair": pairs}
    done = await operator.http.post("/groups/bulk", data=form, headers=HTML)
    level, text = await flash_after(operator, done)
    assert (level, text) == ("ok", "Replies on in 2 groups.")
    state = await settings_of(sessionmaker)
    assert state[(ids[0], -100)] == (True, playbook_id)
    assert state[(ids[1], -100)] == (True, playbook_id)
    assert state[(late, -100)] == (False, None)
    (record,) = await audits(sessionmaker, "account.group.bulk")
    assert record.actor == "user:otto"
    assert record.details["ids"] == 2
    assert record.details["chat_ids"] == [-100]
    assert record.details["groups"] == 2


async def test_disabling_keeps_the_playbook_and_enabling_restores_it(
    operator: Browser, sessionmaker: Maker
) -> None:
    ids, playbook_id = await fleet(sessionmaker)
    pair = f"{ids[1]}:-200"
    off = await operator.post("/groups/bulk", {"action": "disable", "pair": pair})
    assert (await flash_after(operator, off)) == ("ok", "Replies off in 1 group.")
    assert (await settings_of(sessionmaker))[(ids[1], -200)] == (False, playbook_id)
    page = await operator.http.get("/groups", headers=HTML)
    assert row_of(page.text, pair).startswith("shop-2 off greeter v1")
    preview = await operator.post("/groups/preview", {"action": "enable", "pair": pair})
    assert changes_previewed(preview.text) == [pair]
    on = await operator.post("/groups/bulk", {"action": "enable", "pair": pair})
    assert (await flash_after(operator, on)) == ("ok", "Replies on in 1 group.")
    async with unit_of_work(sessionmaker) as session:
        row = await session.get(AccountGroup, (ids[1], -200))
        assert row is not None
        assert (row.enabled, row.playbook_id, row.playbook_version) == (True, playbook_id, 1)


async def test_enabling_a_group_without_a_playbook_writes_nothing(
    operator: Browser, sessionmaker: Maker
) -> None:
    ids, _ = await fleet(sessionmaker)
    preview = await operator.post("/groups/preview", {"action": "enable", "chat": "-100"})
    assert changes_previewed(preview.text) == []
    assert f'data-unchanged="{ids[0]}:-100"' in preview.text
    assert "no playbook to switch replies on with" in preview.text
    before = await settings_of(sessionmaker)
    forged = await operator.post(
        "/groups/bulk",
        {"action": "enable", "pair": [f"{ids[1]}:-200", f"{ids[0]}:-100"]},
    )
    level, text = await flash_after(operator, forged)
    assert level == "bad"
    assert text.startswith("Nothing changed: 1 of the selected groups have no playbook")
    assert await settings_of(sessionmaker) == before
    assert await audits(sessionmaker, "account.group.bulk") == []


async def test_hostile_inputs(operator: Browser, sessionmaker: Maker) -> None:
    (account_id,) = await make_accounts(sessionmaker, ["x"])
    await set_group(sessionmaker, account_id, -300, enabled=False, title=XSS)
    page = await operator.http.get("/groups", headers=HTML)
    assert XSS not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    long = await operator.http.get("/groups", params={"q": "a" * 201}, headers=HTML)
    assert long.status_code == 422
    for data in (
        {"action": "enable", "pair": "not-a-pair"},
        {"action": "enable", "pair": f"{account_id}:x"},
        {"action": "enable", "pair": f"{account_id}:-300", "version": "one"},
        {"action": "enable", "pair": f"{account_id}:-300", "playbook": "nope"},
    ):
        refused = await operator.post("/groups/preview", data)
        assert refused.status_code == 400, data
    bad_action = await operator.post(
        "/groups/bulk", {"action": "drop", "pair": f"{account_id}:-300"}
    )
    assert bad_action.status_code == 422
    nothing = await operator.post("/groups/preview", {"action": "disable"})
    assert (await flash_after(operator, nothing))[0] == "warn"
    assert await audits(sessionmaker, "account.group.bulk") == []
