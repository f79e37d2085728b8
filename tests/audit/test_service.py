"""The audit chain: what is recorded, that it verifies, that tampering is found, and that
a failed audit write undoes the change (fail closed). Both databases."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import DEFAULT_PASSWORD, Credentials, user_with_role
from tgfleet.audit import service as audit_service
from tgfleet.audit.chain import GENESIS_HASH
from tgfleet.audit.schemas import AuditContext, AuditVerifyRead
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work

CONTEXT = AuditContext(actor="cli:test", ip="192.0.2.1", request_id="req-1")


async def append(maker: async_sessionmaker[AsyncSession], count: int) -> None:
    async with unit_of_work(maker) as session:
        for index in range(count):
            await audit_service.record(
                session, CONTEXT, action="test.event", target=f"thing:{index}", details={"i": index}
            )


async def verify(maker: async_sessionmaker[AsyncSession]) -> AuditVerifyRead:
    async with unit_of_work(maker) as session:
        return await audit_service.verify(session)


async def execute(maker: async_sessionmaker[AsyncSession], statement: str) -> None:
    async with unit_of_work(maker) as session:
        await session.execute(text(statement))


class TestChain:
    async def test_fresh_chain_verifies(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        result = await verify(sessionmaker)
        assert (result.ok, result.count) == (True, 0)
        await append(sessionmaker, 5)
        result = await verify(sessionmaker)
        assert (result.ok, result.count) == (True, 5)

    async def test_records_link_to_each_other(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        await append(sessionmaker, 3)
        async with sessionmaker() as session:
            rows = (
                await session.execute(
                    text("SELECT seq, prev_hash, hash FROM audit_record ORDER BY seq")
                )
            ).all()
        assert [row[0] for row in rows] == [1, 2, 3]
        assert rows[0][1] == GENESIS_HASH
        assert rows[1][1] == rows[0][2]
        assert rows[2][1] == rows[1][2]

    async def test_concurrent_writers_do_not_fork_the_chain(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Ten units of work appending at once still make one linear chain."""
        await asyncio.gather(*(append(sessionmaker, 3) for _ in range(10)))
        result = await verify(sessionmaker)
        assert (result.ok, result.count) == (True, 30)

    @pytest.mark.parametrize(
        ("tamper", "bad_seq"),
        [
            ("UPDATE audit_record SET actor = 'user:mallory' WHERE seq = 3", 3),
            ("UPDATE audit_record SET details = '{\"i\": 99}' WHERE seq = 4", 4),
            ("DELETE FROM audit_record WHERE seq = 2", 2),
            ("DELETE FROM audit_record WHERE seq = 5", 5),
            (
                (
                    "UPDATE audit_record SET seq = CASE seq WHEN 2 THEN 3 WHEN 3 THEN 2 END "
                    "WHERE seq IN (2, 3)"
                ),
                2,
            ),
            ("UPDATE audit_chain_head SET seq = 7", 6),
        ],
        ids=["edit-actor", "edit-details", "delete-middle", "delete-last", "reorder", "head"],
    )
    async def test_tampering_is_found_at_its_seq(
        self, sessionmaker: async_sessionmaker[AsyncSession], tamper: str, bad_seq: int
    ) -> None:
        await append(sessionmaker, 5)
        if "CASE" in tamper:
            # Swap through a free seq so the primary key holds on both databases.
            await execute(sessionmaker, "UPDATE audit_record SET seq = 1000 WHERE seq = 2")
            await execute(sessionmaker, "UPDATE audit_record SET seq = 2 WHERE seq = 3")
            await execute(sessionmaker, "UPDATE audit_record SET seq = 3 WHERE seq = 1000")
        else:
            await execute(sessionmaker, tamper)
        result = await verify(sessionmaker)
        assert result.ok is False
        assert result.first_bad_seq == bad_seq, result.reason

    async def test_secrets_are_scrubbed_from_details(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with unit_of_work(sessionmaker) as session:
            entry = await audit_service.record(
                session,
                CONTEXT,
                action="test.secret",
                target="x",
                details={"password": "hunter2", "nested": {"api_token": "tgf_abc"}, "ok": 1},
            )
        assert entry.details == {
            "password": "[redacted]",
            "nested": {"api_token": "[redacted]"},
            "ok": 1,
        }
        assert (await verify(sessionmaker)).ok


class TestWhatIsRecorded:
    async def test_logins_tokens_users_roles(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        await client.post(
            "/api/v1/auth/login", json={"username": "root", "password": "wrong-wrong-wrong"}
        )
        await client.post(
            "/api/v1/auth/login", json={"username": "nobody", "password": "wrong-wrong-wrong"}
        )
        token = (
            await client.post("/api/v1/auth/tokens", json={"name": "t"}, headers=admin.headers)
        ).json()
        await client.delete(f"/api/v1/auth/tokens/{token['id']}", headers=admin.headers)
        await client.post(
            "/api/v1/users",
            json={"username": "eve", "role": "viewer", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        await client.put("/api/v1/users/eve/role", json={"role": "auditor"}, headers=admin.headers)
        await client.post("/api/v1/users/eve/disable", headers=admin.headers)
        await client.post(
            "/api/v1/roles",
            json={"name": "ro", "permissions": ["user:read"]},
            headers=admin.headers,
        )

        page = (
            await client.get("/api/v1/audit", params={"limit": 100}, headers=admin.headers)
        ).json()
        records = list(reversed(page["items"]))
        summary = [(r["action"], r["result"], r["details"].get("reason")) for r in records]
        assert summary == [
            ("user.create", "success", None),  # the factory's user
            ("auth.login", "success", None),
            ("auth.login", "failure", "bad_password"),
            ("auth.login", "failure", "unknown_user"),
            ("auth.token.create", "success", None),
            ("auth.token.revoke", "success", None),
            ("user.create", "success", None),
            ("user.role.change", "success", None),
            ("user.disable", "success", None),
            ("role.create", "success", None),
        ]
        failed_login = records[2]
        assert failed_login["ip"] == "127.0.0.1"
        assert failed_login["details"]["username"] == "root"
        assert failed_login["request_id"]
        assert records[6]["actor"] == "user:root"
        assert DEFAULT_PASSWORD not in str(page)
        assert "long enough pass 1" not in str(page)

    async def test_filters_and_cursor(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
    ) -> None:
        await append(sessionmaker, 7)
        by_action = await client.get(
            "/api/v1/audit", params={"action": "test.event"}, headers=admin.headers
        )
        assert len(by_action.json()["items"]) == 7
        prefix = await client.get(
            "/api/v1/audit", params={"action": "auth.*"}, headers=admin.headers
        )
        assert {r["action"] for r in prefix.json()["items"]} == {"auth.login"}
        by_target = await client.get(
            "/api/v1/audit", params={"target": "thing:3"}, headers=admin.headers
        )
        assert [r["details"] for r in by_target.json()["items"]] == [{"i": 3}]
        by_actor = await client.get(
            "/api/v1/audit", params={"actor": "cli:test"}, headers=admin.headers
        )
        assert len(by_actor.json()["items"]) == 7
        future = await client.get(
            "/api/v1/audit", params={"since": "2999-01-01T00:00:00Z"}, headers=admin.headers
        )
        assert future.json()["items"] == []
        past = await client.get(
            "/api/v1/audit", params={"until": "2000-01-01T00:00:00Z"}, headers=admin.headers
        )
        assert past.json()["items"] == []
        naive = await client.get(
            "/api/v1/audit", params={"since": "2020-01-01T00:00:00"}, headers=admin.headers
        )
        assert naive.status_code == 400
        seqs: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 3, "action": "test.event"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/audit", params=params, headers=admin.headers)).json()
            seqs += [r["seq"] for r in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seqs == sorted(seqs, reverse=True)
        assert len(seqs) == 7
        verified = await client.get("/api/v1/audit/verify", headers=admin.headers)
        assert verified.json()["ok"] is True


TRIGGERS = {
    "sqlite": [
        (
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_record "
            "BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END"
        )
    ],
    "postgresql": [
        (
            "CREATE FUNCTION audit_down() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit storage unavailable'; END $$ LANGUAGE plpgsql"
        ),
        (
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_record "
            "FOR EACH ROW EXECUTE FUNCTION audit_down()"
        ),
    ],
}


class TestFailClosed:
    async def test_failed_audit_write_undoes_the_change(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """With audit inserts failing in the database, creating a user answers 503 and the
        user does not exist afterwards; the chain is untouched."""
        admin: Credentials = await user_with_role(client, sessionmaker, security, "admin")
        before = await verify(sessionmaker)
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)

        response = await client.post(
            "/api/v1/users",
            json={"username": "phantom", "role": "viewer", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        assert response.status_code == 503
        assert response.json()["error"] == "audit_unavailable"
        assert "audit storage" not in response.text  # no database internals to the client

        async with sessionmaker() as session:
            count = await session.scalar(
                text("SELECT count(*) FROM \"user\" WHERE username = 'phantom'")
            )
        assert count == 0
        after = await verify(sessionmaker)
        assert (after.ok, after.count) == (True, before.count)

    async def test_failed_audit_on_login_refuses_the_login(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        await user_with_role(client, sessionmaker, security, "viewer", username="vic")
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)
        response = await client.post(
            "/api/v1/auth/login", json={"username": "vic", "password": DEFAULT_PASSWORD}
        )
        assert response.status_code == 503
        assert "access_token" not in response.text
