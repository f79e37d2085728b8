"""The playbook API: CRUD, versions, errors with line and field, and the dry run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.factories import Credentials, user_with_role
from tests.fakes.openai_server import FakeChatServer
from tgfleet.app import create_app
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AccountGroup, AuditRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = "/api/v1/playbooks"
V1 = "rules:\n  - {name: hi, when: {mention: true}, reply: {templates: ['Hi {{ sender.name }}']}}\n"
V2 = "rules:\n  - {name: hi, when: {mention: true}, reply: {templates: ['v2']}}\n"

Maker = async_sessionmaker[AsyncSession]


async def create(
    client: httpx.AsyncClient, who: Credentials, name: str = "faq", source: str = V1
) -> dict[str, object]:
    response = await client.post(
        BASE, json={"name": name, "source": source, "description": "d"}, headers=who.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


class TestCrud:
    async def test_create_get_update_versions(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        """A saved playbook reads back with its source; an update is version 2; both
        versions stay readable; the list shows it without source."""
        created = await create(client, operator)
        assert (created["latest_version"], created["source"]) == (1, V1)
        assert created["version_created_by"] == "user:operator-user"
        url = f"{BASE}/{created['id']}"
        updated = await client.put(url, json={"source": V2}, headers=operator.headers)
        assert updated.status_code == 200, updated.text
        assert (updated.json()["latest_version"], updated.json()["source"]) == (2, V2)
        got = (await client.get(url, headers=operator.headers)).json()
        assert got["source"] == V2
        versions = (await client.get(f"{url}/versions", headers=operator.headers)).json()
        assert [v["version"] for v in versions["items"]] == [2, 1]
        assert "source" not in versions["items"][0]
        first = (await client.get(f"{url}/versions/1", headers=operator.headers)).json()
        assert first["source"] == V1
        listed = (await client.get(BASE, headers=operator.headers)).json()
        assert [p["name"] for p in listed["items"]] == ["faq"]

    async def test_update_with_same_source_is_409(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        created = await create(client, operator)
        response = await client.put(
            f"{BASE}/{created['id']}", json={"source": V1}, headers=operator.headers
        )
        assert response.status_code == 409
        assert response.json()["error"] == "playbook_unchanged"

    async def test_not_found(self, client: httpx.AsyncClient, operator: Credentials) -> None:
        missing = f"{BASE}/{uuid.uuid4()}"
        assert (await client.get(missing, headers=operator.headers)).status_code == 404
        response = await client.put(missing, json={"source": V1}, headers=operator.headers)
        assert response.json()["error"] == "playbook_not_found"
        created = await create(client, operator)
        response = await client.get(f"{BASE}/{created['id']}/versions/9", headers=operator.headers)
        assert response.status_code == 404
        assert response.json()["error"] == "playbook_version_not_found"

    async def test_invalid_source_is_422_with_line_and_field(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        source = "rules:\n  - name: a\n    when: {mention: true}\n    reply:\n      templates: []\n"
        response = await client.post(
            BASE, json={"name": "bad", "source": source}, headers=operator.headers
        )
        assert response.status_code == 422
        assert response.json() == {
            "error": "playbook_invalid",
            "detail": "line 5, rules[0].reply.templates: at least one template is required",
        }
        assert (await client.get(BASE, headers=operator.headers)).json()["items"] == []

    async def test_delete_in_use_then_free(
        self, client: httpx.AsyncClient, operator: Credentials, sessionmaker: Maker
    ) -> None:
        created = await create(client, operator)
        playbook_id = uuid.UUID(str(created["id"]))
        async with unit_of_work(sessionmaker) as session:
            account = Account(id=uuid.uuid4(), label="acct")
            session.add(account)
            await session.flush()
            session.add(AccountGroup(account_id=account.id, chat_id=-1001, playbook_id=playbook_id))
        url = f"{BASE}/{playbook_id}"
        response = await client.delete(url, headers=operator.headers)
        assert response.status_code == 409
        assert response.json()["error"] == "playbook_in_use"
        assert "used by 1 account group" in response.json()["detail"]
        async with unit_of_work(sessionmaker) as session:
            group = await session.get(AccountGroup, (account.id, -1001))
            assert group is not None
            await session.delete(group)
        assert (await client.delete(url, headers=operator.headers)).status_code == 204
        assert (await client.get(url, headers=operator.headers)).status_code == 404

    async def test_mutations_are_audited(
        self, client: httpx.AsyncClient, operator: Credentials, sessionmaker: Maker
    ) -> None:
        created = await create(client, operator)
        url = f"{BASE}/{created['id']}"
        await client.put(url, json={"source": V2}, headers=operator.headers)
        await client.delete(url, headers=operator.headers)
        async with unit_of_work(sessionmaker) as session:
            rows = (
                await session.execute(
                    select(AuditRecord)
                    .where(AuditRecord.action.like("playbook.%"))
                    .order_by(AuditRecord.seq)
                )
            ).scalars()
            records = [(r.action, r.actor, r.target, r.details.get("version")) for r in rows]
        target = f"playbook:{created['id']}"
        assert records == [
            ("playbook.create", "user:operator-user", target, 1),
            ("playbook.update", "user:operator-user", target, 2),
            ("playbook.delete", "user:operator-user", target, None),
        ]

    async def test_viewer_reads_but_cannot_write(
        self,
        client: httpx.AsyncClient,
        operator: Credentials,
        sessionmaker: Maker,
        security: Security,
    ) -> None:
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        created = await create(client, operator)
        assert (
            await client.get(f"{BASE}/{created['id']}", headers=viewer.headers)
        ).status_code == 200
        response = await client.post(BASE, json={"name": "x", "source": V1}, headers=viewer.headers)
        assert response.status_code == 403

    async def test_viewer_may_dry_run(
        self,
        client: httpx.AsyncClient,
        operator: Credentials,
        sessionmaker: Maker,
        security: Security,
    ) -> None:
        """A dry run writes nothing: reading playbooks is enough (the console's panel too)."""
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        created = await create(client, operator)
        response = await client.post(
            f"{BASE}/{created['id']}/dry-run",
            json={"message": {"text": "hey", "mentions_account": True}},
            headers=viewer.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1


class TestDryRun:
    async def test_pinned_and_latest(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        """The dry run uses the latest version unless one is pinned, and reports the
        limits that would apply."""
        created = await create(client, operator)
        url = f"{BASE}/{created['id']}"
        await client.put(url, json={"source": V2}, headers=operator.headers)
        message = {"text": "hey", "mentions_account": True, "sender_first_name": "Dana"}
        latest = await client.post(
            f"{url}/dry-run", json={"message": message}, headers=operator.headers
        )
        assert latest.status_code == 200, latest.text
        body = latest.json()
        assert (body["version"], body["fired"], body["reply"], body["rule"]) == (
            2,
            True,
            "v2",
            "hi",
        )
        assert body["limits"] == {
            "min_interval_seconds": 30.0,
            "account_hourly": 30,
            "group_hourly": 20,
            "probability": 1.0,
        }
        pinned = await client.post(
            f"{url}/dry-run", json={"version": 1, "message": message}, headers=operator.headers
        )
        assert pinned.json()["reply"] == "Hi Dana"

    async def test_no_match_says_why(
        self, client: httpx.AsyncClient, operator: Credentials
    ) -> None:
        created = await create(client, operator)
        response = await client.post(
            f"{BASE}/{created['id']}/dry-run",
            json={"message": {"text": "x"}},
            headers=operator.headers,
        )
        body = response.json()
        assert (body["fired"], body["reason"], body["limits"]) == (False, "no_rule_matched", None)

    @pytest.mark.parametrize(
        ("name", "message", "rule"),
        [
            ("support-faq.yaml", {"text": "How much does the pro plan cost?"}, "pricing"),
            ("community-welcome.yaml", {"text": "", "new_member": True}, "welcome"),
        ],
    )
    async def test_examples(
        self,
        client: httpx.AsyncClient,
        operator: Credentials,
        name: str,
        message: dict[str, object],
        rule: str,
    ) -> None:
        """Both shipped examples install through the API and answer their typical message."""
        created = await create(client, operator, name=name, source=(EXAMPLES / name).read_text())
        response = await client.post(
            f"{BASE}/{created['id']}/dry-run",
            json={"message": {**message, "chat_title": "Example Shop"}},
            headers=operator.headers,
        )
        body = response.json()
        assert (body["fired"], body["rule"], body["source"]) == (True, rule, "template")
        assert body["reply"]


@pytest.fixture
async def llm_app(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[FastAPI, FakeChatServer]]:
    """An app whose settings point at a fake model."""
    async with FakeChatServer(reply="Our plans start at 5 EUR.") as llm:
        settings = make_settings(
            db_url,
            tmp_path / "data",
            llm_base_url=llm.base_url,
            llm_api_key=SecretStr("sk-config"),
            llm_model="house-model",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            yield app, llm


class TestDryRunWithModel:
    async def test_llm_rule_calls_the_configured_model(
        self, llm_app: tuple[FastAPI, FakeChatServer]
    ) -> None:
        """The dry run of an LLM rule asks the model from the settings, with its key."""
        app, llm = llm_app
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await self._ask(app, client, llm)

    async def _ask(self, app: FastAPI, client: httpx.AsyncClient, llm: FakeChatServer) -> None:
        operator = await user_with_role(
            client, app.state.sessionmaker, app.state.security, "operator"
        )
        created = await create(
            client, operator, name="faq", source=(EXAMPLES / "support-faq.yaml").read_text()
        )
        response = await client.post(
            f"{BASE}/{created['id']}/dry-run",
            json={
                "message": {"text": "can you help me?", "mentions_account": True},
                "account": {"label": "shop-1", "first_name": "Sam"},
            },
            headers=operator.headers,
        )
        body = response.json()
        assert (body["fired"], body["source"], body["reply"]) == (
            True,
            "llm",
            "Our plans start at 5 EUR.",
        )
        assert body["rule"] == "ask-the-assistant"
        (request,) = llm.requests
        assert request["model"] == "house-model"
        assert request["messages"][0]["content"].startswith("You are Sam, the support assistant")
        assert llm.auth_headers == ["Bearer sk-config"]
        assert "sk-config" not in response.text
