"""Authentication feeds its Prometheus metrics: logins by outcome, throttles, and every
reason a request is denied. Real database (both backends), the real API.

Counters are process-wide, so every test reads the samples it cares about before acting
and asserts what it added (`Watch`), never an absolute value.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.auth.conftest import LOGIN, ME, USERS, bearer, change_password, create_token
from tests.conftest import TEST_JWT_SECRET
from tests.factories import DEFAULT_PASSWORD, Credentials, create_user
from tests.prometheus_watch import Watch, outcome_of, plain
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work
from tgfleet.models import ApiToken


def logins() -> Watch:
    return Watch(
        success=outcome_of("tgfleet_logins_total", "success"),
        failure=outcome_of("tgfleet_logins_total", "failure"),
        throttled=outcome_of("tgfleet_logins_total", "throttled"),
        throttles=plain("tgfleet_login_throttles_total"),
    )


REASONS = (
    "missing_credentials",
    "invalid_token",
    "expired_token",
    "stale_token",
    "disabled_user",
    "forbidden",
    "wrong_password",
)


def denials() -> Watch:
    return Watch(**{r: ("tgfleet_auth_denied_total", {"reason": r}) for r in REASONS})


def denied(**expected: float) -> dict[str, float]:
    return {reason: expected.get(reason, 0) for reason in REASONS}


class TestLogins:
    async def test_success_failure_and_disabled(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        """A right password is a success; a wrong one, an unknown name and a disabled
        user are failures."""
        await create_user(sessionmaker, security, username="gone", role="viewer")
        await client.post(f"{USERS}/gone/disable", headers=admin.headers)
        watch = logins()
        attempts = [
            ("root", DEFAULT_PASSWORD, 200),
            ("root", "wrong wrong wrong", 401),
            ("nobody", "wrong wrong wrong", 401),
            ("gone", DEFAULT_PASSWORD, 403),
        ]
        for username, password, status in attempts:
            response = await client.post(LOGIN, json={"username": username, "password": password})
            assert response.status_code == status, response.text
        assert watch.delta() == {"success": 1, "failure": 3, "throttled": 0, "throttles": 0}

    async def test_throttled_login(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        """Five failures, then two attempts refused by the throttle (the right password
        among them): five failures and two throttled logins."""
        watch = logins()
        for _ in range(5):
            await client.post(LOGIN, json={"username": "root", "password": "bad-bad-bad"})
        for password in (DEFAULT_PASSWORD, "bad-bad-bad"):
            response = await client.post(LOGIN, json={"username": "root", "password": password})
            assert response.status_code == 429
        assert watch.delta() == {"success": 0, "failure": 5, "throttled": 2, "throttles": 2}


class TestAuthDenied:
    async def test_missing_and_invalid_credentials(self, client: httpx.AsyncClient) -> None:
        watch = denials()
        for headers in ({}, {"Authorization": "Basic eDp5"}):
            assert (await client.get(ME, headers=headers)).status_code == 401
        assert (await client.get(ME, headers=bearer("not.a.jwt"))).status_code == 401
        assert (await client.get(ME, headers=bearer("tgf_unknown"))).status_code == 401
        assert watch.delta() == denied(missing_credentials=2, invalid_token=2)

    async def test_expired_tokens(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
    ) -> None:
        """An expired JWT and an expired API token are both expired_token."""
        claims = jwt.decode(admin.token, TEST_JWT_SECRET, algorithms=["HS256"])
        past = datetime.now(UTC) - timedelta(hours=1)
        expired_jwt = jwt.encode(
            claims | {"iat": int(past.timestamp()) - 60, "exp": int(past.timestamp())},
            TEST_JWT_SECRET,
            algorithm="HS256",
        )
        created = await create_token(client, admin.headers)
        assert created.status_code == 201, created.text
        async with unit_of_work(sessionmaker) as session:
            await session.execute(update(ApiToken).values(expires_at=past))
        watch = denials()
        assert (await client.get(ME, headers=bearer(expired_jwt))).status_code == 401
        assert (await client.get(ME, headers=bearer(created.json()["token"]))).status_code == 401
        assert watch.delta() == denied(expired_token=2)

    async def test_disabled_user_and_stale_token(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        """A disabled user's JWT is disabled_user; a JWT from before a password change is
        stale_token."""
        await asyncio.sleep(1.05)  # iat has one-second resolution
        changed = await change_password(
            client, admin.headers, DEFAULT_PASSWORD, "a brand new passphrase"
        )
        assert changed.status_code == 204
        fresh = await client.post(
            LOGIN, json={"username": "root", "password": "a brand new passphrase"}
        )
        fresh_headers = bearer(fresh.json()["access_token"])
        disabled = await client.post(f"{USERS}/{viewer.username}/disable", headers=fresh_headers)
        assert disabled.status_code == 200, disabled.text
        watch = denials()
        assert (await client.get(ME, headers=viewer.headers)).status_code == 401
        assert (await client.get(ME, headers=admin.headers)).status_code == 401
        assert watch.delta() == denied(disabled_user=1, stale_token=1)

    async def test_forbidden_and_wrong_password(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        """A viewer creating a user and an API token changing a password are forbidden; a
        wrong current password is wrong_password. Each refused request counts once."""
        created = await create_token(client, admin.headers)
        api_token = bearer(created.json()["token"])
        watch = denials()
        refused = await client.post(
            USERS, json={"username": "x", "role": "admin"}, headers=viewer.headers
        )
        assert refused.status_code == 403
        by_token = await change_password(
            client, api_token, DEFAULT_PASSWORD, "an attacker's choice"
        )
        assert by_token.status_code == 403
        wrong = await change_password(client, admin.headers, "not-the-password", "a brand new one")
        assert wrong.status_code == 403
        assert watch.delta() == denied(forbidden=2, wrong_password=1)
