"""Hostile input answers a 4xx with the usual error body, never a 500, on both databases.

Each case below answered 500 on PostgreSQL (or on both backends) before the request-layer
guard: NUL bytes that PostgreSQL cannot store, integers past the column's range, datetimes
that overflow when converted to UTC, a deeply nested YAML source, JWT times past what a
``datetime`` can hold. Every case runs against a database where the target exists, so the
request really reaches the query that used to fail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from sqlalchemy import String, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from tests.conftest import TEST_JWT_SECRET, Backend
from tests.factories import PLAYBOOK_SOURCE, Credentials, make_accounts, user_with_role
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AuditRecord, Playbook, Silence

CHAT_ID = -1001234567890
FAR_FUTURE = "2999-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class World:
    """What the cases act on: an admin, an account and a playbook that exist."""

    admin: Credentials
    account_id: uuid.UUID
    playbook_id: str


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # formatted with the World's fields
    json: dict[str, Any] | None = None
    anonymous: bool = False
    statuses: frozenset[int] = frozenset({400, 422})


def _jwt(**claims: Any) -> str:
    """A token signed with the server's real key whose claims are otherwise fine."""
    base = {"sub": uuid.uuid4().hex, "iat": 1_700_000_000, "exp": 4_000_000_000}
    base.update({"jti": "x" * 32, "typ": "access"}, **claims)
    return jwt.encode(base, TEST_JWT_SECRET, algorithm="HS256")


def _silence(*, value: str = "acc1", ends_at: str = FAR_FUTURE, comment: str = "c") -> Case:
    body = {"matchers": [{"name": "account", "value": value}], "ends_at": ends_at}
    return Case("POST", "/api/v1/silences", json={**body, "comment": comment})


CASES: dict[str, Case] = {
    "login username NUL": Case(
        "POST",
        "/api/v1/auth/login",
        json={"username": "ad\x00min", "password": "whatever"},
        anonymous=True,
    ),
    "accounts q NUL": Case("GET", "/api/v1/accounts?q=%00"),
    "accounts label NUL": Case("GET", "/api/v1/accounts?label=a%00b"),
    "groups q NUL": Case("GET", "/api/v1/groups?q=%00"),
    "groups label NUL": Case("GET", "/api/v1/groups?label=a%00b"),
    "users q NUL": Case("GET", "/api/v1/users?q=%00"),
    "audit actor NUL": Case("GET", "/api/v1/audit?actor=%00"),
    "audit target C0 control": Case("GET", "/api/v1/audit?target=a%01"),
    "path segment NUL": Case("GET", "/api/v1/users/ad%00min"),
    "group title NUL": Case(
        "PUT",
        f"/api/v1/accounts/{{account_id}}/groups/{CHAT_ID}",
        json={"enabled": True, "playbook_id": "{playbook_id}", "title": "team\x00"},
    ),
    "playbook description NUL": Case(
        "POST",
        "/api/v1/playbooks",
        json={"name": "nul", "description": "a\x00b", "source": PLAYBOOK_SOURCE},
    ),
    "playbook update description NUL": Case(
        "PUT",
        "/api/v1/playbooks/{playbook_id}",
        json={"description": "a\x00b", "source": PLAYBOOK_SOURCE},
    ),
    "silence comment NUL": _silence(comment="maintenance\x00"),
    "silence matcher value NUL (nested)": _silence(value="a\x00"),
    "version path past int64": Case(
        "GET", "/api/v1/playbooks/{playbook_id}/versions/99999999999999999999"
    ),
    "version path past int32": Case("GET", "/api/v1/playbooks/{playbook_id}/versions/2147483648"),
    "group playbook_version past int32": Case(
        "PUT",
        f"/api/v1/accounts/{{account_id}}/groups/{CHAT_ID}",
        json={"enabled": True, "playbook_id": "{playbook_id}", "playbook_version": 2**31},
    ),
    "token expires_at past year 9999 in UTC": Case(
        "POST",
        "/api/v1/auth/tokens",
        json={"name": "far", "expires_at": "9999-12-31T23:59:59-14:00"},
    ),
    "silence ends_at past year 9999 in UTC": _silence(ends_at="9999-12-31T23:59:59-14:00"),
    "audit since before year 1 in UTC": Case(
        "GET", "/api/v1/audit?since=0001-01-01T00:00:00%2B14:00"
    ),
    "playbook source nested 20000 deep": Case(
        "POST",
        "/api/v1/playbooks",
        json={"name": "deep", "source": "rules: " + "[" * 20000},
    ),
    "JWT exp 1e20": Case("GET", "/api/v1/auth/me", statuses=frozenset({401})),
    "JWT exp -1e20": Case("GET", "/api/v1/auth/me", statuses=frozenset({401})),
    "JWT iat 1e20": Case("GET", "/api/v1/auth/me", statuses=frozenset({401})),
    "JWT iat -1e20": Case("GET", "/api/v1/auth/me", statuses=frozenset({401})),
}

JWT_CLAIMS: dict[str, dict[str, Any]] = {
    "JWT exp 1e20": {"exp": 10**20},
    "JWT exp -1e20": {"exp": -(10**20)},
    "JWT iat 1e20": {"iat": 10**20},
    "JWT iat -1e20": {"iat": -(10**20)},
}


def _fill(value: Any, world: World) -> Any:
    if isinstance(value, str):
        return value.replace("{playbook_id}", world.playbook_id)
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    return value


async def _rows(maker: async_sessionmaker[AsyncSession], model: type[Any]) -> int:
    async with unit_of_work(maker) as session:
        count: int = await session.scalar(select(func.count()).select_from(model)) or 0
        return count


@pytest.fixture
async def world(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> World:
    admin = await user_with_role(client, sessionmaker, security, "admin")
    (account_id,) = await make_accounts(sessionmaker, ["acc1"])
    created = await client.post(
        "/api/v1/playbooks",
        headers=admin.headers,
        json={"name": "base", "source": PLAYBOOK_SOURCE},
    )
    assert created.status_code == 201, created.text
    group = await client.put(
        f"/api/v1/accounts/{account_id}/groups/{CHAT_ID}",
        headers=admin.headers,
        json={"enabled": True, "playbook_id": created.json()["id"], "title": "team"},
    )
    assert group.status_code == 200, group.text
    return World(admin=admin, account_id=account_id, playbook_id=created.json()["id"])


class TestHostileInput:
    @pytest.mark.parametrize("name", list(CASES))
    async def test_answers_4xx_with_error_body(
        self,
        name: str,
        client: httpx.AsyncClient,
        world: World,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """The case is refused with a 4xx and ``{"error", "detail"}`` (it answered 500), and
        nothing was written: no playbook, silence or audit record beyond those before."""
        case = CASES[name]
        headers = {} if case.anonymous else dict(world.admin.headers)
        if name in JWT_CLAIMS:
            headers = {"Authorization": f"Bearer {_jwt(**JWT_CLAIMS[name])}"}
        before = [await _rows(sessionmaker, m) for m in (Playbook, Silence, AuditRecord)]
        response = await client.request(
            case.method,
            case.path.format(account_id=world.account_id, playbook_id=world.playbook_id),
            json=_fill(case.json, world),
            headers=headers,
        )
        assert response.status_code in case.statuses, response.text
        body = response.json()
        assert set(body) == {"error", "detail"}
        assert isinstance(body["detail"], str)
        assert body["detail"]
        assert "\x00" not in response.text
        after = [await _rows(sessionmaker, m) for m in (Playbook, Silence)]
        assert after == before[:2]

    async def test_guard_names_the_offending_field(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        """A refused body says which field holds the control character, so a caller can fix
        it; a refused query says which parameter."""
        body = await client.post(
            "/api/v1/silences",
            headers=world.admin.headers,
            json={
                "matchers": [{"name": "account", "value": "acc1"}],
                "ends_at": FAR_FUTURE,
                "comment": "x\x00",
            },
        )
        assert body.status_code == 422
        assert "comment" in body.json()["detail"]
        assert "control character" in body.json()["detail"]
        query = await client.get("/api/v1/accounts?q=%00", headers=world.admin.headers)
        assert query.status_code == 400
        assert query.json()["error"] == "bad_request"
        assert "q" in query.json()["detail"]

    async def test_ordinary_text_still_passes(
        self, client: httpx.AsyncClient, world: World
    ) -> None:
        """Tabs and newlines in free text, non-ASCII letters in queries, and the widest
        representable datetimes are accepted: the guard refuses only what cannot be stored."""
        created = await client.post(
            "/api/v1/playbooks",
            headers=world.admin.headers,
            json={
                "name": "multi-line",
                "description": "line one\nline two\ttabbed — ünïcødé",
                "source": PLAYBOOK_SOURCE,
            },
        )
        assert created.status_code == 201, created.text
        assert created.json()["description"] == "line one\nline two\ttabbed — ünïcødé"
        found = await client.get("/api/v1/accounts?q=%C3%BC", headers=world.admin.headers)
        assert found.status_code == 200, found.text
        edge = await client.get(
            "/api/v1/audit?since=0001-01-01T14:00:00%2B14:00&until=9999-12-31T09:59:59-14:00",
            headers=world.admin.headers,
        )
        assert edge.status_code == 200, edge.text
        token = await client.post(
            "/api/v1/auth/tokens",
            headers=world.admin.headers,
            json={"name": "long", "expires_at": "9999-12-30T00:00:00+00:00"},
        )
        assert token.status_code == 201, token.text


class TestDatabaseBackstop:
    async def test_a_value_the_database_refuses_is_a_400_and_a_logged_error(
        self, app: FastAPI, client: httpx.AsyncClient, backend: Backend
    ) -> None:
        """Should a value slip past the guard, PostgreSQL's data exception (SQLSTATE 22)
        answers 400 ``invalid_input``, not 500, and is logged as an error without the value
        (so it is still seen as the bug it is). SQLite stores such values: nothing to refuse."""
        if backend.name != "postgres":
            pytest.skip("SQLite stores NUL; only PostgreSQL refuses it")

        async def store_nul(request: Request) -> None:
            async with unit_of_work(request.app.state.sessionmaker) as session:
                await session.execute(select(bindparam("value", "sec\x00ret", type_=String)))

        app.add_api_route("/test-only/refused", store_nul, methods=["POST"])
        with capture_logs() as logs:
            response = await client.post("/test-only/refused")
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_input"
        refused = [entry for entry in logs if entry["event"] == "http.database_refused_value"]
        assert len(refused) == 1
        assert refused[0]["log_level"] == "error"
        assert refused[0]["sqlstate"] == "22021"
        assert "sec" not in repr(logs)
