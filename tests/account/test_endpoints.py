"""Accounts over HTTP (both databases): listing with status, filters and counts, commands,
bulk commands, the timeline, group settings, audit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import (
    Credentials,
    account_row,
    event_count,
    events_of,
    join_groups,
    make_accounts,
    make_playbook,
    observe,
    telethon_string,
    user_with_role,
)
from tgfleet.auth.service import Security

ACCOUNTS = "/api/v1/accounts"
Maker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def operator(
    client: httpx.AsyncClient, sessionmaker: Maker, security: Security
) -> Credentials:
    return await user_with_role(client, sessionmaker, security, "operator", username="olga")


AuditActions = Callable[[str], Awaitable[list[dict[str, object]]]]


@pytest.fixture
async def olga(app: FastAPI, operator: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    """The API as the operator olga calls it: her token on every request."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=operator.headers
    ) as http:
        yield http


@pytest.fixture
def audit(client: httpx.AsyncClient, admin: Credentials) -> AuditActions:
    """The audit records of one action, newest first, as an admin reads them."""

    async def actions(action: str) -> list[dict[str, object]]:
        response = await client.get(
            "/api/v1/audit", params={"action": action}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, object]] = response.json()["items"]
        return items

    return actions


#: What a bulk answer that ran (not a dry run) says besides its counts.
RAN: dict[str, object] = {"dry_run": False, "sample": None}


def ran(action: str, *, matched: int, changed: int) -> dict[str, object]:
    """The body of a bulk command that ran (not a dry run)."""
    return {"action": action, "matched": matched, "changed": changed} | RAN


def previewed(
    counts: dict[str, object], *accounts: tuple[uuid.UUID, str, str]
) -> dict[str, object]:
    """The body of a bulk dry run: its counts and the sample of (id, label, state)."""
    sample = [{"id": str(i), "label": label, "state": state} for i, label, state in accounts]
    return counts | {"dry_run": True, "sample": sample}


class TestRead:
    async def test_account_without_status_reads_as_stopped(self, olga: httpx.AsyncClient) -> None:
        """An imported account no worker has run shows status stopped, restart_seq 0 and
        keeps its session summary."""
        imported = await olga.post(
            f"{ACCOUNTS}/import",
            content=telethon_string(1).encode(),
            params={"name": "s.txt", "label": "fresh"},
            headers={"Content-Type": "application/octet-stream"},
        )
        account_id = imported.json()["results"][0]["account_id"]
        body = (await olga.get(f"{ACCOUNTS}/{account_id}")).json()
        assert body["status"]["state"] == "stopped"
        assert body["status"]["since"] is None
        assert body["status"]["messages_received"] == 0
        assert body["restart_seq"] == 0
        assert body["session"]["state"] == "active"

    async def test_listing_reads_no_key_material(
        self, olga: httpx.AsyncClient, app: FastAPI
    ) -> None:
        """The list and the detail show each session's summary from its summary columns
        alone: no statement they run reads the wrapped key, nonce or ciphertext (about
        28 KiB a session, 50 of them per page, for nothing the answer shows)."""
        for n in (1, 2):
            imported = await olga.post(
                f"{ACCOUNTS}/import",
                content=telethon_string(n).encode(),
                params={"name": f"s{n}.txt", "label": f"kept-{n}"},
                headers={"Content-Type": "application/octet-stream"},
            )
            assert imported.status_code == 200, imported.text
        statements: list[str] = []

        def on_execute(*args: object) -> None:
            statements.append(str(args[2]))

        engine = app.state.engine.sync_engine
        event.listen(engine, "before_cursor_execute", on_execute)
        try:
            page = (await olga.get(ACCOUNTS)).json()
            one = page["items"][0]
            detail = await olga.get(f"{ACCOUNTS}/{one['id']}")
        finally:
            event.remove(engine, "before_cursor_execute", on_execute)
        assert [item["session"]["state"] for item in page["items"]] == ["active", "active"]
        assert detail.json()["session"] == one["session"]
        assert one["session"]["source_format"] == "telethon-string"
        assert one["session"]["version"] == 1
        reads = [s for s in statements if "FROM session_secret" in s]
        assert reads, statements
        for column in ("wrapped_key", "nonce", "ciphertext"):
            assert not [s for s in reads if f"session_secret.{column}" in s], column

    async def test_status_fields_come_from_the_worker_row(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """What the worker observed (state, reason, error, counters) is in the item."""
        (account_id,) = await make_accounts(sessionmaker, ["seen"])
        await observe(
            sessionmaker,
            account_id,
            "quarantined",
            reason="auth_key_unregistered",
            worker_id="w-1",
            last_error_code="AuthKeyUnregisteredError",
            replies_sent=4,
        )
        listed = (await olga.get(ACCOUNTS)).json()
        status = listed["items"][0]["status"]
        assert status["state"] == "quarantined"
        assert status["reason"] == "auth_key_unregistered"
        assert status["worker_id"] == "w-1"
        assert status["last_error_code"] == "AuthKeyUnregisteredError"
        assert status["replies_sent"] == 4
        assert status["since"] is not None

    async def test_filters_counts_and_pages(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """state (repeatable), label prefix and q filter; counts cover label/q but not state;
        the cursor continues the filtered list."""
        ids = await make_accounts(
            sessionmaker,
            ["eu-a", "eu-b", "eu-c", "eu-d", "us-a"],
            usernames=[None, None, "zed", None, None],
        )
        await observe(sessionmaker, ids[0], "online")
        await observe(sessionmaker, ids[1], "flood_wait")
        await observe(sessionmaker, ids[2], "online")
        await observe(sessionmaker, ids[4], "online")
        params: dict[str, str | int | list[str]] = {
            "label": "eu-",
            "state": ["online", "flood_wait"],
            "limit": 2,
        }
        first = (await olga.get(ACCOUNTS, params=params)).json()
        assert [a["label"] for a in first["items"]] == ["eu-a", "eu-b"]
        assert first["counts"]["online"] == 2
        assert first["counts"]["flood_wait"] == 1
        assert first["counts"]["stopped"] == 1  # eu-d has no status row
        assert first["counts"]["quarantined"] == 0
        second = (await olga.get(ACCOUNTS, params=params | {"cursor": first["next_cursor"]})).json()
        assert [a["label"] for a in second["items"]] == ["eu-c"]
        assert second["next_cursor"] is None
        by_q = (await olga.get(ACCOUNTS, params={"q": "ZED"})).json()
        assert [a["label"] for a in by_q["items"]] == ["eu-c"]
        assert sum(by_q["counts"].values()) == 1

    async def test_unknown_state_is_422(self, olga: httpx.AsyncClient) -> None:
        """A state that is not in the state list is a validation error."""
        response = await olga.get(ACCOUNTS, params={"state": "sleeping"})
        assert response.status_code == 422
        assert "state" in response.json()["detail"]


class TestCommands:
    async def test_start_lifts_quarantine_and_is_audited(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """start returns the account running with a higher restart_seq when quarantined;
        on an online account it leaves restart_seq alone; both are audited."""
        quarantined, online = await make_accounts(sessionmaker, ["q", "o"])
        await observe(sessionmaker, quarantined, "quarantined")
        await observe(sessionmaker, online, "online")
        lifted = await olga.post(f"{ACCOUNTS}/{quarantined}/start")
        assert lifted.status_code == 200, lifted.text
        assert (lifted.json()["desired_state"], lifted.json()["restart_seq"]) == ("running", 1)
        assert lifted.json()["status"]["state"] == "quarantined"
        plain = await olga.post(f"{ACCOUNTS}/{online}/start")
        assert (plain.json()["desired_state"], plain.json()["restart_seq"]) == ("running", 0)
        records = await audit("account.start")
        assert {r["target"] for r in records} == {f"account:{quarantined}", f"account:{online}"}
        assert all(r["actor"] == "user:olga" for r in records)

    async def test_stop_and_restart(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """stop sets stopped (also when already stopped, still audited); restart runs and
        raises restart_seq."""
        (account_id,) = await make_accounts(sessionmaker, ["s"])
        stopped = await olga.post(f"{ACCOUNTS}/{account_id}/stop")
        assert stopped.status_code == 200
        assert stopped.json()["desired_state"] == "stopped"
        restarted = await olga.post(f"{ACCOUNTS}/{account_id}/restart")
        assert (restarted.json()["desired_state"], restarted.json()["restart_seq"]) == (
            "running",
            1,
        )
        assert len(await audit("account.stop")) == 1
        assert len(await audit("account.restart")) == 1
        assert [e.code for e in await events_of(sessionmaker, account_id)] == ["stop", "restart"]

    async def test_unknown_account_is_404(self, olga: httpx.AsyncClient) -> None:
        """A command for an unknown id names it."""
        response = await olga.post(f"{ACCOUNTS}/{uuid.uuid4()}/stop")
        assert response.status_code == 404
        assert response.json()["error"] == "account_not_found"

    async def test_viewer_cannot_control(
        self, client: httpx.AsyncClient, sessionmaker: Maker, security: Security
    ) -> None:
        """account:read is not enough to start an account."""
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        (account_id,) = await make_accounts(sessionmaker, ["v"])
        response = await client.post(f"{ACCOUNTS}/{account_id}/start", headers=viewer.headers)
        assert response.status_code == 403
        assert (await account_row(sessionmaker, account_id)).desired_state == "stopped"


class TestBulk:
    async def test_by_ids_and_by_filter(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """Bulk by ids and by filter report matched and changed; one audit record each."""
        ids = await make_accounts(sessionmaker, ["k1", "k2", "m1"])
        by_ids = await olga.post(
            f"{ACCOUNTS}/bulk", json={"ids": [str(i) for i in ids[:2]], "action": "start"}
        )
        assert by_ids.status_code == 200, by_ids.text
        assert by_ids.json() == ran("start", matched=2, changed=2)
        by_filter = await olga.post(
            f"{ACCOUNTS}/bulk",
            json={"filter": {"label": "k", "state": ["stopped"]}, "action": "restart"},
        )
        assert by_filter.json()["matched"] == by_filter.json()["changed"] == 2
        records = await audit("account.bulk")
        assert [r["details"] for r in records] == [
            {
                "action": "restart",
                "filter": {"label": "k", "state": ["stopped"]},
                "matched": 2,
                "changed": 2,
            },
            {"action": "start", "ids": 2, "matched": 2, "changed": 2},
        ]
        assert (await account_row(sessionmaker, ids[2])).desired_state == "stopped"

    async def test_all_must_be_explicit(self, olga: httpx.AsyncClient, sessionmaker: Maker) -> None:
        """An empty filter is refused with a message that says what to do; {"all": true}
        covers the fleet."""
        await make_accounts(sessionmaker, ["f1", "f2"])
        empty = await olga.post(f"{ACCOUNTS}/bulk", json={"filter": {}, "action": "restart"})
        assert empty.status_code == 422
        assert empty.json() == {
            "error": "empty_filter",
            "detail": "a filter must name at least one field; use ids or a filter",
        }
        everything = await olga.post(
            f"{ACCOUNTS}/bulk", json={"filter": {"all": True}, "action": "stop"}
        )
        assert (everything.json()["matched"], everything.json()["changed"]) == (2, 0)

    async def test_refusals(self, olga: httpx.AsyncClient, sessionmaker: Maker) -> None:
        """10,001 ids, both ids and filter, an unknown action, an unknown state: 422."""
        ids = await make_accounts(sessionmaker, ["r"])
        bodies: list[dict[str, object]] = [
            {"ids": [str(uuid.uuid4()) for _ in range(10_001)], "action": "stop"},
            {"ids": [str(ids[0])], "filter": {"label": "r"}, "action": "stop"},
            {"ids": [str(ids[0])], "action": "explode"},
            {"filter": {"state": ["sleeping"]}, "action": "stop"},
            {"ids": [], "action": "stop"},
            {"action": "stop"},
        ]
        for body in bodies:
            response = await olga.post(f"{ACCOUNTS}/bulk", json=body)
            assert response.status_code == 422, (body.keys(), response.text)

    async def test_unknown_ids_are_404_and_change_nothing(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """One unknown id among known ones: 404 naming it, the known ones untouched."""
        ids = await make_accounts(sessionmaker, ["u1", "u2"])
        unknown = uuid.uuid4()
        response = await olga.post(
            f"{ACCOUNTS}/bulk",
            json={"ids": [str(ids[0]), str(unknown), str(ids[1])], "action": "start"},
        )
        assert response.status_code == 404
        assert response.json()["error"] == "accounts_not_found"
        assert str(unknown) in response.json()["detail"]
        assert [(await account_row(sessionmaker, i)).desired_state for i in ids] == ["stopped"] * 2
        assert await events_of(sessionmaker, ids[0]) == []


class TestQuery:
    async def test_worker_group_and_sort_params(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """worker and group repeat, sort orders with the label breaking ties, and the
        counts follow the worker and group filters."""
        ids = await make_accounts(sessionmaker, ["g1", "g2", "g3", "g4"])
        await observe(sessionmaker, ids[0], "online", worker_id="w1")
        await observe(sessionmaker, ids[1], "error", worker_id="w2")
        await observe(sessionmaker, ids[2], "online", worker_id="w2")
        await join_groups(sessionmaker, ids[1], [-100])
        await join_groups(sessionmaker, ids[2], [-100, -200])
        await join_groups(sessionmaker, ids[3], [-200])
        response = await olga.get(
            ACCOUNTS, params={"worker": ["w2", "w1"], "group": [-100, -200], "sort": "-state"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert [(a["label"], a["status"]["state"]) for a in body["items"]] == [
            ("g3", "online"),
            ("g2", "error"),
        ]
        assert {k: v for k, v in body["counts"].items() if v} == {"online": 1, "error": 1}
        assert body["next_cursor"] is None
        by_worker = (await olga.get(ACCOUNTS, params={"sort": "-worker", "limit": 3})).json()
        assert [a["label"] for a in by_worker["items"]] == ["g2", "g3", "g1"]
        rest = await olga.get(
            ACCOUNTS, params={"sort": "-worker", "limit": 3, "cursor": by_worker["next_cursor"]}
        )
        assert [a["label"] for a in rest.json()["items"]] == ["g4"]
        mismatch = await olga.get(
            ACCOUNTS, params={"sort": "worker", "cursor": by_worker["next_cursor"]}
        )
        assert mismatch.status_code == 422
        assert mismatch.json() == {
            "error": "cursor_sort_mismatch",
            "detail": "the cursor continues a listing sorted by '-worker', not 'worker'; "
            "start again without a cursor",
        }

    async def test_bad_params_are_422(self, olga: httpx.AsyncClient) -> None:
        """An unknown sort names the allowed values; a group that is not a marked chat id,
        and more than 50 values of one filter, are refused."""
        unknown = await olga.get(ACCOUNTS, params={"sort": "size"})
        assert unknown.status_code == 422
        assert unknown.json()["error"] == "validation_error", unknown.text
        detail = unknown.json()["detail"]
        for allowed in ("'label'", "'-label'", "'state'", "'since'", "'-worker'", "'created'"):
            assert allowed in detail, detail
        too_many_states = {"state": ["online"] * 51}
        for params in (
            {"group": "abc"},
            {"group": "0"},
            {"group": str(2**63)},
            {"group": [str(-i) for i in range(1, 52)]},
            {"worker": [f"w{i}" for i in range(51)]},
            {"worker": "w" * 129},
            too_many_states,
        ):
            response = await olga.get(ACCOUNTS, params=params)
            assert response.status_code == 422, (params, response.text)
        body_refusals: list[dict[str, object]] = [
            {"group": [0]},
            {"group": ["x"]},
            {"group": list(range(1, 52))},
            {"worker": [f"w{i}" for i in range(51)]},
            {"worker": []},
        ]
        for refused in body_refusals:
            response = await olga.post(
                f"{ACCOUNTS}/bulk", json={"filter": refused, "action": "stop"}
            )
            assert response.status_code == 422, (refused, response.text)

    async def test_bulk_filter_by_worker_and_group(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """The bulk filter body takes worker and group; the audit record names them."""
        ids = await make_accounts(sessionmaker, ["h1", "h2", "h3"])
        await observe(sessionmaker, ids[0], "online", worker_id="w1")
        await observe(sessionmaker, ids[1], "online", worker_id="w1")
        await join_groups(sessionmaker, ids[1], [-7])
        await join_groups(sessionmaker, ids[2], [-7])
        response = await olga.post(
            f"{ACCOUNTS}/bulk",
            json={"filter": {"worker": ["w1"], "group": [-7]}, "action": "start"},
        )
        assert response.status_code == 200, response.text
        assert response.json() == ran("start", matched=1, changed=1)
        (record,) = await audit("account.bulk")
        assert record["details"] == {
            "action": "start",
            "filter": {"worker": ["w1"], "group": [-7]},
            "matched": 1,
            "changed": 1,
        }
        states = [(await account_row(sessionmaker, i)).desired_state for i in ids]
        assert states == ["stopped", "running", "stopped"]

    async def test_dry_run_changes_and_audits_nothing(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """A dry run answers matched and a sample, by filter and by ids; no desired state,
        no timeline event, no audit record changes. The real run then matches as many."""
        ids = await make_accounts(sessionmaker, ["d1", "d2", "e1"])
        await observe(sessionmaker, ids[1], "quarantined")
        before = await event_count(sessionmaker)
        by_filter = await olga.post(
            f"{ACCOUNTS}/bulk",
            json={"filter": {"label": "d"}, "action": "restart", "dry_run": True},
        )
        assert by_filter.status_code == 200, by_filter.text
        assert by_filter.json() == previewed(
            {"action": "restart", "matched": 2, "changed": 0},
            (ids[0], "d1", "stopped"),
            (ids[1], "d2", "quarantined"),
        )
        by_ids = await olga.post(
            f"{ACCOUNTS}/bulk",
            json={"ids": [str(ids[2]), str(ids[0])], "action": "start", "dry_run": True},
        )
        assert by_ids.json() == previewed(
            {"action": "start", "matched": 2, "changed": 0},
            (ids[0], "d1", "stopped"),
            (ids[2], "e1", "stopped"),
        )
        empty = await olga.post(
            f"{ACCOUNTS}/bulk", json={"filter": {}, "action": "stop", "dry_run": True}
        )
        assert empty.json()["error"] == "empty_filter"
        rows = [await account_row(sessionmaker, i) for i in ids]
        assert [(a.desired_state, a.restart_seq) for a in rows] == [("stopped", 0)] * 3
        assert await event_count(sessionmaker) == before
        assert await audit("account.bulk") == []
        real = await olga.post(
            f"{ACCOUNTS}/bulk", json={"filter": {"label": "d"}, "action": "restart"}
        )
        assert real.json()["matched"] == by_filter.json()["matched"]


class TestEvents:
    async def test_timeline_pages_newest_first(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """Events come newest first, the cursor continues, kind filters."""
        (account_id,) = await make_accounts(sessionmaker, ["t"])
        for action in ("start", "stop", "restart"):
            await olga.post(f"{ACCOUNTS}/{account_id}/{action}")
        url = f"{ACCOUNTS}/{account_id}/events"
        first = (await olga.get(url, params={"limit": 2})).json()
        assert [e["code"] for e in first["items"]] == ["restart", "stop"]
        assert first["items"][0]["kind"] == "command"
        assert first["items"][0]["details"]["actor"] == "user:olga"
        rest = (await olga.get(url, params={"limit": 2, "cursor": first["next_cursor"]})).json()
        assert [e["code"] for e in rest["items"]] == ["start"]
        assert rest["next_cursor"] is None
        none = (await olga.get(url, params={"kind": "state"})).json()
        assert none["items"] == []

    async def test_unknown_account(self, olga: httpx.AsyncClient) -> None:
        """The timeline of an unknown account is a 404."""
        response = await olga.get(f"{ACCOUNTS}/{uuid.uuid4()}/events")
        assert response.status_code == 404


class TestGroups:
    async def test_put_get_delete(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """A group is created disabled, enabled with a playbook, listed, and forgotten."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        playbook_id = await make_playbook(sessionmaker)
        url = f"{ACCOUNTS}/{account_id}/groups/-1001234567890"
        created = await olga.put(url, json={"enabled": False, "title": "Support"})
        assert created.status_code == 200, created.text
        assert created.json()["enabled"] is False
        enabled = await olga.put(
            url, json={"enabled": True, "playbook_id": str(playbook_id), "playbook_version": 1}
        )
        assert enabled.status_code == 200, enabled.text
        body = enabled.json()
        assert (body["enabled"], body["playbook_id"], body["playbook_version"]) == (
            True,
            str(playbook_id),
            1,
        )
        assert body["title"] == "Support"
        listed = (await olga.get(f"{ACCOUNTS}/{account_id}/groups")).json()
        assert [(g["chat_id"], g["enabled"]) for g in listed["items"]] == [(-1001234567890, True)]
        records = await audit("account.group.update")
        assert len(records) == 2
        gone = await olga.delete(url)
        assert gone.status_code == 204
        again = await olga.delete(url)
        assert again.status_code == 404
        assert again.json()["error"] == "group_not_found"
        codes = [e.code for e in await events_of(sessionmaker, account_id) if e.kind == "group"]
        assert codes == ["updated", "enabled", "removed"]

    async def test_enabling_without_playbook_is_422(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """Replies need a playbook."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        response = await olga.put(f"{ACCOUNTS}/{account_id}/groups/-42", json={"enabled": True})
        assert response.status_code == 422
        assert response.json() == {
            "error": "group_needs_playbook",
            "detail": "assign a playbook before enabling replies in a group",
        }

    async def test_unknown_playbook_and_account(
        self, olga: httpx.AsyncClient, sessionmaker: Maker
    ) -> None:
        """An unknown playbook or account is a 404; chat id 0 or out of range a 422."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        unknown_playbook = await olga.put(
            f"{ACCOUNTS}/{account_id}/groups/-42",
            json={"enabled": True, "playbook_id": str(uuid.uuid4())},
        )
        assert unknown_playbook.status_code == 404
        assert unknown_playbook.json()["error"] == "playbook_not_found"
        unknown_account = await olga.put(
            f"{ACCOUNTS}/{uuid.uuid4()}/groups/-42", json={"enabled": False}
        )
        assert unknown_account.status_code == 404
        for chat_id in ("0", str(2**63)):
            bad = await olga.put(
                f"{ACCOUNTS}/{account_id}/groups/{chat_id}", json={"enabled": False}
            )
            assert bad.status_code == 422, chat_id

    async def test_bulk_enable(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """The bulk route switches a playbook on for chosen groups of many accounts."""
        ids = await make_accounts(sessionmaker, ["b1", "b2"])
        playbook_id = await make_playbook(sessionmaker)
        response = await olga.post(
            f"{ACCOUNTS}/groups/bulk",
            json={
                "filter": {"label": "b"},
                "chat_ids": [-77],
                "enabled": True,
                "playbook_id": str(playbook_id),
                "create": True,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"matched": 2, "groups": 2, "created": 2} | RAN
        for account_id in ids:
            groups = (await olga.get(f"{ACCOUNTS}/{account_id}/groups")).json()["items"]
            assert [(g["chat_id"], g["enabled"], g["playbook_id"]) for g in groups] == [
                (-77, True, str(playbook_id))
            ]
        (record,) = await audit("account.group.bulk")
        assert record["details"]["created"] == 2  # type: ignore[index]
        refused = await olga.post(
            f"{ACCOUNTS}/groups/bulk", json={"filter": {}, "all_groups": True, "enabled": False}
        )
        assert refused.status_code == 422
        assert refused.json()["error"] == "empty_filter"

    async def test_bulk_dry_run_writes_nothing(
        self, olga: httpx.AsyncClient, audit: AuditActions, sessionmaker: Maker
    ) -> None:
        """A dry run counts the rows it would write and create and names the accounts; no
        group row, timeline event or audit record changes, and the real run agrees."""
        ids = await make_accounts(sessionmaker, ["c1", "c2", "x1"])
        await join_groups(sessionmaker, ids[0], [-77, -88, -99])
        playbook_id = await make_playbook(sessionmaker)
        body: dict[str, object] = {
            "filter": {"label": "c"},
            "chat_ids": [-77, -88],
            "enabled": True,
            "playbook_id": str(playbook_id),
            "create": True,
        }
        before = await event_count(sessionmaker)
        dry = await olga.post(f"{ACCOUNTS}/groups/bulk", json=body | {"dry_run": True})
        assert dry.status_code == 200, dry.text
        assert dry.json() == previewed(
            {"matched": 2, "groups": 4, "created": 2},
            (ids[0], "c1", "stopped"),
            (ids[1], "c2", "stopped"),
        )
        first = (await olga.get(f"{ACCOUNTS}/{ids[0]}/groups")).json()["items"]
        assert [(g["chat_id"], g["enabled"]) for g in first] == [
            (-99, False),
            (-88, False),
            (-77, False),
        ]
        assert (await olga.get(f"{ACCOUNTS}/{ids[1]}/groups")).json()["items"] == []
        assert await event_count(sessionmaker) == before
        assert await audit("account.group.bulk") == []
        real = await olga.post(f"{ACCOUNTS}/groups/bulk", json=body)
        assert real.json() | {"dry_run": True, "sample": dry.json()["sample"]} == dry.json()
