"""Login, tokens, users and roles through the HTTP API (both databases)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import TEST_JWT_SECRET
from tests.factories import DEFAULT_PASSWORD, Credentials, create_user, login, user_with_role
from tgfleet.auth.service import Security

LOGIN = "/api/v1/auth/login"


class TestLogin:
    async def test_success_returns_bearer_jwt(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """A right password gets a JWT with exp, iat, sub and jti, usable on /me."""
        response = await client.post(LOGIN, json={"username": "root", "password": DEFAULT_PASSWORD})
        assert response.status_code == 200
        body = response.json()
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == 900
        claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
        assert {"exp", "iat", "sub", "jti"} <= set(claims)
        me = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.status_code == 200
        assert me.json()["username"] == "root"
        assert me.json()["role"] == "admin"

    async def test_username_is_case_insensitive(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        response = await client.post(LOGIN, json={"username": "ROOT", "password": DEFAULT_PASSWORD})
        assert response.status_code == 200

    async def test_wrong_password_and_unknown_user_look_the_same(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """Same status and body for a wrong password and an unknown user."""
        wrong = await client.post(LOGIN, json={"username": "root", "password": "nope-nope-nope"})
        unknown = await client.post(LOGIN, json={"username": "ghost", "password": "nope-nope-nope"})
        assert wrong.status_code == unknown.status_code == 401
        assert (
            wrong.json()
            == unknown.json()
            == {
                "error": "invalid_credentials",
                "detail": "invalid username or password",
            }
        )

    async def test_unknown_user_takes_as_long_as_a_wrong_password(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """An unknown name still runs a full argon2 verification (no timing oracle).

        Run with production argon2 costs, so hashing (about 0.25 s here) dominates the
        database's few milliseconds of noise and the comparison means something."""
        from tests.conftest import make_settings
        from tgfleet.app import create_app

        app = create_app(
            make_settings(
                db_url,
                tmp_path / "argon2",
                argon2_time_cost=3,
                argon2_memory_kib=65536,
                argon2_parallelism=4,
                login_throttle_threshold=100,
            )
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await create_user(
                    app.state.sessionmaker, app.state.security, username="root", role="admin"
                )

                async def median(username: str) -> float:
                    samples = []
                    for index in range(3):
                        started = time.perf_counter()
                        await client.post(
                            LOGIN,
                            json={"username": username, "password": f"wrong-password-{index}"},
                        )
                        samples.append(time.perf_counter() - started)
                    return sorted(samples)[len(samples) // 2]

                await median("warm-up-the-dummy-hash")
                known, unknown = await median("root"), await median("nobody-here")
        assert 0.5 < unknown / known < 2.0

    async def test_disabled_user_is_refused(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        await create_user(sessionmaker, security, username="bob", role="viewer")
        disabled = await client.post("/api/v1/users/bob/disable", headers=admin.headers)
        assert disabled.status_code == 200
        response = await client.post(LOGIN, json={"username": "bob", "password": DEFAULT_PASSWORD})
        assert response.status_code == 403
        assert response.json()["error"] == "user_disabled"

    async def test_malformed_username_gets_the_same_401(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            LOGIN, json={"username": "x'; DROP TABLE user; --", "password": "whatever-whatever"}
        )
        assert response.status_code == 401

    @pytest.mark.parametrize(
        ("body", "code"),
        [
            ({"username": "root"}, "validation_error"),
            ({"username": "root", "password": "p", "extra": 1}, "validation_error"),
            ({"username": "", "password": "p"}, "validation_error"),
        ],
    )
    async def test_bad_bodies(
        self, client: httpx.AsyncClient, body: dict[str, object], code: str
    ) -> None:
        response = await client.post(LOGIN, json=body)
        assert response.status_code == 422
        assert response.json()["error"] == code


class TestThrottle:
    async def test_engages_after_threshold_and_releases_after_delay(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """Five failures block the name for base=1 s; the right password then still gets 429
        with Retry-After, and succeeds once the delay has passed."""
        for _ in range(5):
            response = await client.post(
                LOGIN, json={"username": "root", "password": "bad-bad-bad"}
            )
            assert response.status_code == 401
        blocked = await client.post(LOGIN, json={"username": "root", "password": DEFAULT_PASSWORD})
        assert blocked.status_code == 429
        assert blocked.json()["error"] == "login_throttled"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 2
        await asyncio.sleep(1.2)
        released = await client.post(LOGIN, json={"username": "root", "password": DEFAULT_PASSWORD})
        assert released.status_code == 200

    async def test_delay_grows_with_more_failures(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        for _ in range(5):
            await client.post(LOGIN, json={"username": "root", "password": "bad-bad-bad"})
        await asyncio.sleep(1.1)
        # the sixth failure doubles the delay to 2 s
        await client.post(LOGIN, json={"username": "root", "password": "bad-bad-bad"})
        blocked = await client.post(LOGIN, json={"username": "root", "password": DEFAULT_PASSWORD})
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) == 2

    async def test_per_ip_counter_blocks_spraying_many_names(self, app: FastAPI) -> None:
        """One address failing on many different names is blocked as an address."""
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as attacker:
            for index in range(5):
                await attacker.post(
                    LOGIN, json={"username": f"user{index}", "password": "bad-bad-bad"}
                )
            response = await attacker.post(
                LOGIN, json={"username": "someone-else", "password": "bad-bad-bad"}
            )
        assert response.status_code == 429

    async def test_success_does_not_reset_another_ips_counter(
        self,
        app: FastAPI,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        """Failures from address A stay counted when the user logs in from address B."""
        await create_user(sessionmaker, security, username="carol", role="viewer")

        def client_at(ip: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=app, client=(ip, 4000))
            return httpx.AsyncClient(transport=transport, base_url="http://t")

        async with client_at("198.51.100.1") as a, client_at("198.51.100.2") as b:
            for index in range(4):  # one short of the threshold, on other names
                await a.post(LOGIN, json={"username": f"x{index}", "password": "bad-bad-bad"})
            ok = await b.post(LOGIN, json={"username": "carol", "password": DEFAULT_PASSWORD})
            assert ok.status_code == 200
            fifth = await a.post(LOGIN, json={"username": "x9", "password": "bad-bad-bad"})
            assert fifth.status_code == 401
            sixth = await a.post(LOGIN, json={"username": "carol", "password": DEFAULT_PASSWORD})
        assert sixth.status_code == 429


def _claims(credentials: Credentials) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(credentials.token, TEST_JWT_SECRET, algorithms=["HS256"])
    return claims


EXPIRED = int((datetime.now(UTC) - timedelta(hours=1)).timestamp())


class TestJwt:
    @pytest.mark.parametrize(
        ("changes", "key", "algorithm", "detail"),
        [
            ({"iat": EXPIRED - 60, "exp": EXPIRED}, TEST_JWT_SECRET, "HS256", "expired"),
            ({}, "another-secret-of-sufficient-length-" + "x" * 40, "HS256", "not valid"),
            ({}, None, "none", "not valid"),
            ({}, TEST_JWT_SECRET, "HS512", "not valid"),  # right secret, other algorithm
            ({"jti": None}, TEST_JWT_SECRET, "HS256", "not valid"),  # a required claim missing
            ({"typ": "refresh"}, TEST_JWT_SECRET, "HS256", "not valid"),
            ({"sub": "not-a-uuid"}, TEST_JWT_SECRET, "HS256", "not valid"),
        ],
        ids=["expired", "forged", "alg-none", "other-alg", "no-jti", "wrong-typ", "bad-sub"],
    )
    async def test_bad_tokens_are_rejected(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        changes: dict[str, object],
        key: str | None,
        algorithm: str,
        detail: str,
    ) -> None:
        claims = {k: v for k, v in (_claims(admin) | changes).items() if v is not None}
        token = jwt.encode(claims, key or "", algorithm=algorithm)
        response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert detail in response.json()["detail"]

    async def test_garbage_and_missing_credentials(self, client: httpx.AsyncClient) -> None:
        for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic eDp5"}):
            response = await client.get("/api/v1/auth/me", headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_password_change_invalidates_older_tokens(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        changed = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "a brand new passphrase"},
            headers=admin.headers,
        )
        assert changed.status_code == 204
        old = await client.get("/api/v1/auth/me", headers=admin.headers)
        assert old.status_code == 401
        fresh = await login(client, "root", "a brand new passphrase")
        ok = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh}"})
        assert ok.status_code == 200

    async def test_disabling_a_user_stops_their_jwt(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        await client.post(f"/api/v1/users/{viewer.username}/disable", headers=admin.headers)
        response = await client.get("/api/v1/auth/me", headers=viewer.headers)
        assert response.status_code == 401


class TestApiTokens:
    async def test_create_use_list_revoke(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """The secret is shown once, works as a bearer, is listed without its secret, and
        stops working the moment it is revoked."""
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "ci"}, headers=admin.headers
        )
        assert created.status_code == 201
        secret = created.json()["token"]
        assert secret.startswith("tgf_")
        bearer = {"Authorization": f"Bearer {secret}"}
        me = await client.get("/api/v1/auth/me", headers=bearer)
        assert me.json()["via"] == "api_token"
        assert me.json()["token_name"] == "ci"
        listed = await client.get("/api/v1/auth/tokens", headers=admin.headers)
        assert [t["name"] for t in listed.json()] == ["ci"]
        assert "token" not in listed.json()[0]
        assert secret not in listed.text
        revoked = await client.delete(
            f"/api/v1/auth/tokens/{created.json()['id']}", headers=admin.headers
        )
        assert revoked.status_code == 204
        after = await client.get("/api/v1/auth/me", headers=bearer)
        assert after.status_code == 401

    async def test_token_stored_hashed(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
    ) -> None:
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "x"}, headers=admin.headers
        )
        secret = created.json()["token"]
        from sqlalchemy import text

        async with sessionmaker() as session:
            stored = (await session.execute(text("SELECT token_hash, prefix FROM api_token"))).one()
        assert secret not in stored[0]
        assert stored[1] == secret[:12]

    async def test_expired_token_is_refused(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        created = await client.post(
            "/api/v1/auth/tokens",
            json={"name": "short", "expires_at": expires},
            headers=admin.headers,
        )
        assert created.status_code == 201
        await asyncio.sleep(1.2)
        response = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {created.json()['token']}"}
        )
        assert response.status_code == 401
        assert "expired" in response.json()["detail"]

    async def test_scopes_narrow_permissions(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await client.post(
            "/api/v1/auth/tokens",
            json={"name": "reader", "scopes": ["user:read"]},
            headers=admin.headers,
        )
        bearer = {"Authorization": f"Bearer {created.json()['token']}"}
        assert (await client.get("/api/v1/users", headers=bearer)).status_code == 200
        denied = await client.post(
            "/api/v1/users", json={"username": "z", "role": "viewer"}, headers=bearer
        )
        assert denied.status_code == 403

    async def test_bad_token_requests(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        """Duplicate name 409, past expiry 400, scope beyond the role 400, unknown scope 422,
        unknown id 404, a token cannot mint tokens (403)."""
        first = await client.post(
            "/api/v1/auth/tokens", json={"name": "dup"}, headers=admin.headers
        )
        dup = await client.post("/api/v1/auth/tokens", json={"name": "dup"}, headers=admin.headers)
        assert dup.status_code == 409
        past = await client.post(
            "/api/v1/auth/tokens",
            json={"name": "p", "expires_at": "2000-01-01T00:00:00Z"},
            headers=admin.headers,
        )
        assert past.status_code == 400
        unknown = await client.post(
            "/api/v1/auth/tokens", json={"name": "u", "scopes": ["root:all"]}, headers=admin.headers
        )
        assert unknown.status_code == 422
        missing = await client.delete(f"/api/v1/auth/tokens/{uuid.uuid4()}", headers=admin.headers)
        assert missing.status_code == 404
        bearer = {"Authorization": f"Bearer {first.json()['token']}"}
        minted = await client.post("/api/v1/auth/tokens", json={"name": "m"}, headers=bearer)
        assert minted.status_code == 403

    async def test_viewer_cannot_scope_beyond_own_role(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
    ) -> None:
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        response = await client.post(
            "/api/v1/auth/tokens",
            json={"name": "up", "scopes": ["user:admin"]},
            headers=viewer.headers,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"

    async def test_odd_token_names_round_trip(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """SQL meta-characters and unicode in a name are data, not syntax."""
        name = "rob'); DROP TABLE api_token;-- «ключ» 🔑"
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": name}, headers=admin.headers
        )
        assert created.status_code == 201
        listed = await client.get("/api/v1/auth/tokens", headers=admin.headers)
        assert [t["name"] for t in listed.json()] == [name]
        control = await client.post(
            "/api/v1/auth/tokens", json={"name": "bad\x00name"}, headers=admin.headers
        )
        assert control.status_code == 422


class TestUsers:
    async def test_create_list_get(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        created = await client.post(
            "/api/v1/users",
            json={"username": "Zoë.Müller", "role": "operator", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["username"] == "zoë.müller"
        assert created.json()["generated_password"] is None
        listed = await client.get("/api/v1/users", headers=admin.headers)
        assert [u["username"] for u in listed.json()["items"]] == ["root", "zoë.müller"]
        one = await client.get("/api/v1/users/ZOË.MÜLLER", headers=admin.headers)
        assert one.json()["role"] == "operator"
        assert await login(client, "zoë.müller", "long enough pass 1")

    async def test_generated_password_is_returned_once_and_works(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await client.post(
            "/api/v1/users", json={"username": "gen", "role": "viewer"}, headers=admin.headers
        )
        password = created.json()["generated_password"]
        assert len(password) >= 12
        assert await login(client, "gen", password)
        again = await client.get("/api/v1/users/gen", headers=admin.headers)
        assert "generated_password" not in again.json()

    async def test_pagination(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        for index in range(5):
            await client.post(
                "/api/v1/users",
                json={"username": f"u{index}", "role": "viewer", "password": "long enough pass 1"},
                headers=admin.headers,
            )
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get("/api/v1/users", params=params, headers=admin.headers)).json()
            seen += [u["username"] for u in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["root", "u0", "u1", "u2", "u3", "u4"]
        bad = await client.get("/api/v1/users", params={"cursor": "%%%"}, headers=admin.headers)
        assert bad.status_code == 400

    @pytest.mark.parametrize(
        ("body", "status", "fragment"),
        [
            (
                {"username": "root", "role": "viewer", "password": "long enough pass 1"},
                409,
                "already exists",
            ),
            (
                {"username": "ROOT", "role": "viewer", "password": "long enough pass 1"},
                409,
                "already exists",
            ),
            ({"username": "new", "role": "viewer", "password": "short"}, 400, "at least 12"),
            (
                {"username": "samename1234", "role": "viewer", "password": "SameName1234"},
                400,
                "username",
            ),
            (
                {"username": "new", "role": "viewer", "password": "aaaaaaaaaaaaaaa"},
                400,
                "different",
            ),
            (
                {"username": "new", "role": "nosuchrole", "password": "long enough pass 1"},
                404,
                "no role",
            ),
            ({"username": "bob'; DROP TABLE user;--", "role": "viewer"}, 422, "username must be"),
            ({"username": "a b", "role": "viewer"}, 422, "username must be"),
            ({"username": "x" * 65, "role": "viewer"}, 422, "at most 64"),
            ({"username": "new", "role": "viewer", "admin": True}, 422, "admin"),
        ],
    )
    async def test_bad_input(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        body: dict[str, object],
        status: int,
        fragment: str,
    ) -> None:
        response = await client.post("/api/v1/users", json=body, headers=admin.headers)
        assert response.status_code == status, response.text
        assert fragment in response.json()["detail"]

    async def test_change_role_and_reset_password(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        await client.post(
            "/api/v1/users",
            json={"username": "dave", "role": "viewer", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        changed = await client.put(
            "/api/v1/users/dave/role", json={"role": "auditor"}, headers=admin.headers
        )
        assert changed.status_code == 200
        assert changed.json()["role"] == "auditor"
        reset = await client.post("/api/v1/users/dave/password", json={}, headers=admin.headers)
        assert reset.status_code == 200
        new_password = reset.json()["generated_password"]
        assert await login(client, "dave", new_password)
        refused = await client.post(
            LOGIN, json={"username": "dave", "password": "long enough pass 1"}
        )
        assert refused.status_code == 401

    async def test_last_admin_cannot_be_disabled_or_demoted(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        disabled = await client.post("/api/v1/users/root/disable", headers=admin.headers)
        assert disabled.status_code == 409
        assert disabled.json()["error"] == "last_admin"
        demoted = await client.put(
            "/api/v1/users/root/role", json={"role": "viewer"}, headers=admin.headers
        )
        assert demoted.status_code == 409
        await client.post(
            "/api/v1/users",
            json={"username": "second", "role": "admin", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        now_ok = await client.post("/api/v1/users/second/disable", headers=admin.headers)
        assert now_ok.status_code == 200
        again = await client.post("/api/v1/users/root/disable", headers=admin.headers)
        assert again.status_code == 409

    async def test_unknown_user(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        for method, path in (
            ("GET", "/api/v1/users/nobody"),
            ("POST", "/api/v1/users/nobody/disable"),
            ("POST", "/api/v1/users/nobody/enable"),
        ):
            response = await client.request(method, path, headers=admin.headers)
            assert response.status_code == 404
            assert response.json()["error"] == "user_not_found"


class TestRoles:
    async def test_builtin_roles_are_listed_read_only(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        roles = (await client.get("/api/v1/roles", headers=admin.headers)).json()
        assert {r["name"] for r in roles} == {"admin", "operator", "viewer", "auditor"}
        viewer = next(r for r in roles if r["name"] == "viewer")
        assert viewer["builtin"] is True
        assert "account:read" in viewer["permissions"]
        patch = await client.patch(
            "/api/v1/roles/viewer", json={"permissions": ["user:admin"]}, headers=admin.headers
        )
        assert patch.status_code == 403
        delete = await client.delete("/api/v1/roles/admin", headers=admin.headers)
        assert delete.status_code == 403

    async def test_custom_role_lifecycle(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await client.post(
            "/api/v1/roles",
            json={"name": "support", "description": "reads users", "permissions": ["user:read"]},
            headers=admin.headers,
        )
        assert created.status_code == 201
        await client.post(
            "/api/v1/users",
            json={"username": "sue", "role": "support", "password": "long enough pass 1"},
            headers=admin.headers,
        )
        sue = {"Authorization": f"Bearer {await login(client, 'sue', 'long enough pass 1')}"}
        assert (await client.get("/api/v1/users", headers=sue)).status_code == 200
        assert (await client.get("/api/v1/audit", headers=sue)).status_code == 403
        widened = await client.patch(
            "/api/v1/roles/support",
            json={"permissions": ["user:read", "audit:read"]},
            headers=admin.headers,
        )
        assert widened.status_code == 200
        assert (await client.get("/api/v1/audit", headers=sue)).status_code == 200
        in_use = await client.delete("/api/v1/roles/support", headers=admin.headers)
        assert in_use.status_code == 409
        await client.put("/api/v1/users/sue/role", json={"role": "viewer"}, headers=admin.headers)
        gone = await client.delete("/api/v1/roles/support", headers=admin.headers)
        assert gone.status_code == 204

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"name": "admin", "permissions": ["user:read"]}, 409),
            ({"name": "x", "permissions": ["user:read"]}, 422),
            ({"name": "Bad Name", "permissions": ["user:read"]}, 422),
            ({"name": "empty", "permissions": []}, 422),
            ({"name": "bogus", "permissions": ["user:root"]}, 422),
        ],
    )
    async def test_bad_roles(
        self, client: httpx.AsyncClient, admin: Credentials, body: dict[str, object], status: int
    ) -> None:
        response = await client.post("/api/v1/roles", json=body, headers=admin.headers)
        assert response.status_code == status, response.text

    async def test_permissions_catalogue(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        codes = {
            p["code"]
            for p in (await client.get("/api/v1/permissions", headers=admin.headers)).json()
        }
        assert {
            "account:read",
            "session:export",
            "vault:rotate",
            "audit:read",
            "user:admin",
        } <= codes


class TestCredentialChangesNeedALogin:
    async def test_api_token_cannot_change_password_or_revoke(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "ci"}, headers=admin.headers
        )
        bearer = {"Authorization": f"Bearer {created.json()['token']}"}
        password = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "an attacker's choice"},
            headers=bearer,
        )
        assert password.status_code == 403
        revoke = await client.delete(f"/api/v1/auth/tokens/{created.json()['id']}", headers=bearer)
        assert revoke.status_code == 403
        assert (await client.get("/api/v1/auth/tokens", headers=bearer)).status_code == 200

    async def test_wrong_current_password(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        response = await client.post(
            "/api/v1/auth/password",
            json={"current_password": "not-the-password", "new_password": "a brand new passphrase"},
            headers=admin.headers,
        )
        assert response.status_code == 403
        weak = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "short"},
            headers=admin.headers,
        )
        assert weak.status_code == 400
        assert weak.json()["error"] == "weak_password"


class TestDeniedIsAudited:
    async def test_forbidden_request_leaves_a_denied_record(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        admin: Credentials,
    ) -> None:
        viewer = await user_with_role(client, sessionmaker, security, "viewer")
        refused = await client.post(
            "/api/v1/users", json={"username": "x", "role": "admin"}, headers=viewer.headers
        )
        assert refused.status_code == 403
        records = (
            await client.get(
                "/api/v1/audit", params={"action": "auth.denied"}, headers=admin.headers
            )
        ).json()["items"]
        assert len(records) == 1
        assert records[0]["actor"] == f"user:{viewer.username}"
        assert records[0]["target"] == "POST /api/v1/users"
        assert records[0]["result"] == "denied"
        assert records[0]["details"] == {"permission": "user:admin", "role": "viewer"}
