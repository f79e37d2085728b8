"""``GET /api/v1/groups``: every group the fleet is in, by chat, with its counts and the
playbooks its accounts use, the filters and the pages (both databases)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, join_groups, make_accounts, make_playbook, user_with_role
from tgfleet.auth.service import Security

ACCOUNTS = "/api/v1/accounts"
GROUPS = "/api/v1/groups"
Maker = async_sessionmaker[AsyncSession]


def rows(body: dict[str, Any]) -> list[tuple[int, str | None, int, int, list[tuple[str, int]]]]:
    """The listing as (chat id, title, accounts, enabled, [(playbook name, accounts)])."""
    return [
        (
            item["chat_id"],
            item["title"],
            item["accounts"],
            item["enabled"],
            [(p["name"], p["accounts"]) for p in item["playbooks"]],
        )
        for item in body["items"]
    ]


class TestFleetGroups:
    async def _fleet(
        self, client: httpx.AsyncClient, admin: Credentials, sessionmaker: Maker
    ) -> dict[str, uuid.UUID]:
        """a1 and a2 reply in -100 ("Support", on a1's row) with greeter; b1 is in it with
        second, replies off; a1 is in -200 and b1 in -300, no playbook."""
        a1, a2, b1 = await make_accounts(sessionmaker, ["a1", "a2", "b1"])
        await join_groups(sessionmaker, a1, [-200])
        await join_groups(sessionmaker, b1, [-300])
        greeter = await make_playbook(sessionmaker, "greeter")
        second = await make_playbook(sessionmaker, "second")
        for account_id, body in (
            (a1, {"enabled": True, "playbook_id": str(greeter), "title": "Support"}),
            (a2, {"enabled": True, "playbook_id": str(greeter)}),
            (b1, {"enabled": False, "playbook_id": str(second)}),
        ):
            put = await client.put(
                f"{ACCOUNTS}/{account_id}/groups/-100", json=body, headers=admin.headers
            )
            assert put.status_code == 200, put.text
        return {"greeter": greeter, "second": second}

    async def test_lists_each_chat_with_counts_and_playbooks(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        sessionmaker: Maker,
        security: Security,
    ) -> None:
        """Each chat once, by chat id, counting its accounts and those replying, with the
        playbooks in use (most used first, by id and name); a viewer may read it."""
        playbooks = await self._fleet(client, admin, sessionmaker)
        viewer = await user_with_role(client, sessionmaker, security, "viewer", username="vera")
        listed = await client.get(GROUPS, headers=viewer.headers)
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert rows(body) == [
            (-300, None, 1, 0, []),
            (-200, None, 1, 0, []),
            (-100, "Support", 3, 2, [("greeter", 2), ("second", 1)]),
        ]
        assert [p["id"] for p in body["items"][2]["playbooks"]] == [
            str(playbooks["greeter"]),
            str(playbooks["second"]),
        ]
        assert body["next_cursor"] is None

    async def test_filters_keep_the_matching_settings(
        self, client: httpx.AsyncClient, admin: Credentials, sessionmaker: Maker
    ) -> None:
        """``q`` (title, any case), ``enabled`` and ``label`` (account label prefix) keep
        the settings that match, and a chat is counted over those only."""
        await self._fleet(client, admin, sessionmaker)

        async def listing(**params: str) -> list[Any]:
            answer = await client.get(GROUPS, params=params, headers=admin.headers)
            assert answer.status_code == 200, answer.text
            return rows(answer.json())

        assert await listing(q="SUPP") == [(-100, "Support", 1, 1, [("greeter", 1)])]
        assert await listing(enabled="true") == [(-100, "Support", 2, 2, [("greeter", 2)])]
        assert await listing(enabled="false") == [
            (-300, None, 1, 0, []),
            (-200, None, 1, 0, []),
            (-100, None, 1, 0, [("second", 1)]),
        ]
        assert await listing(label="B") == [
            (-300, None, 1, 0, []),
            (-100, None, 1, 0, [("second", 1)]),
        ]
        assert await listing(label="a", q="%") == []

    async def test_pages_by_chat_id(
        self, client: httpx.AsyncClient, admin: Credentials, sessionmaker: Maker
    ) -> None:
        """``limit`` cuts the listing and ``next_cursor`` continues after the last chat."""
        await self._fleet(client, admin, sessionmaker)
        first = (await client.get(GROUPS, params={"limit": 2}, headers=admin.headers)).json()
        assert [item["chat_id"] for item in first["items"]] == [-300, -200]
        assert first["next_cursor"]
        rest = await client.get(
            GROUPS, params={"limit": 2, "cursor": first["next_cursor"]}, headers=admin.headers
        )
        assert [item["chat_id"] for item in rest.json()["items"]] == [-100]
        assert rest.json()["next_cursor"] is None
