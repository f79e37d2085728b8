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

from tests.auth.conftest import (
    LOGIN,
    ME,
    TOKENS,
    USER_PASSWORD,
    USERS,
    add_user,
    bearer,
    change_password,
    create_token,
)
from tests.conftest import TEST_JWT_SECRET
from tests.factories import DEFAULT_PASSWORD, Credentials, create_user, login
from tests.harness import poll
from tgfleet.auth.service import Security


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
        me = await client.get(ME, headers=bearer(body["access_token"]))
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
        self, client: httpx.AsyncClient, viewer: Credentials, admin: Credentials
    ) -> None:
        disabled = await client.post(f"{USERS}/{viewer.username}/disable", headers=admin.headers)
        assert disabled.status_code == 200
        response = await client.post(
            LOGIN, json={"username": viewer.username, "password": DEFAULT_PASSWORD}
        )
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
        response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 401
        assert detail in response.json()["detail"]

    async def test_garbage_and_missing_credentials(self, client: httpx.AsyncClient) -> None:
        for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic eDp5"}):
            response = await client.get(ME, headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"

    async def test_password_change_invalidates_older_tokens(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        changed = await change_password(
            client, admin.headers, DEFAULT_PASSWORD, "a brand new passphrase"
        )
        assert changed.status_code == 204
        old = await client.get(ME, headers=admin.headers)
        assert old.status_code == 401
        fresh = await login(client, "root", "a brand new passphrase")
        ok = await client.get(ME, headers=bearer(fresh))
        assert ok.status_code == 200

    async def test_disabling_a_user_stops_their_jwt(
        self, client: httpx.AsyncClient, viewer: Credentials, admin: Credentials
    ) -> None:
        await client.post(f"{USERS}/{viewer.username}/disable", headers=admin.headers)
        response = await client.get(ME, headers=viewer.headers)
        assert response.status_code == 401


class TestApiTokens:
    async def test_create_use_list_revoke(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """The secret is shown once, works as a bearer, is listed without its secret, and
        stops working the moment it is revoked."""
        created = await create_token(client, admin.headers)
        assert created.status_code == 201
        secret = created.json()["token"]
        assert secret.startswith("tgf_")
        me = await client.get(ME, headers=bearer(secret))
        assert me.json()["via"] == "api_token"
        assert me.json()["token_name"] == "ci"
        listed = await client.get(TOKENS, headers=admin.headers)
        assert [t["name"] for t in listed.json()] == ["ci"]
        assert "token" not in listed.json()[0]
        assert secret not in listed.text
        revoked = await client.delete(f"{TOKENS}/{created.json()['id']}", headers=admin.headers)
        assert revoked.status_code == 204
        after = await client.get(ME, headers=bearer(secret))
        assert after.status_code == 401

    async def test_token_stored_hashed(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
    ) -> None:
        created = await create_token(client, admin.headers, "x")
        secret = created.json()["token"]
        from sqlalchemy import text

        async with sessionmaker() as session:
            stored = (await session.execute(text("SELECT token_hash, prefix FROM api_token"))).one()
        assert secret not in stored[0]
        assert stored[1] == secret[:12]

    async def test_expired_token_is_refused(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        # Three seconds to create it (a loaded machine took over one), then it must lapse.
        expires = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        created = await create_token(client, admin.headers, "short", expires_at=expires)
        assert created.status_code == 201
        token = bearer(created.json()["token"])
        answers: list[httpx.Response] = []

        async def refused() -> bool:
            answers.append(await client.get(ME, headers=token))
            return answers[-1].status_code != 200

        assert await poll(refused, 15, 0.2), "the token never expired"
        assert answers[0].status_code == 200 or datetime.now(UTC) >= datetime.fromisoformat(expires)
        assert answers[-1].status_code == 401
        assert "expired" in answers[-1].json()["detail"]

    async def test_scopes_narrow_permissions(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await create_token(client, admin.headers, "reader", scopes=["user:read"])
        reader = bearer(created.json()["token"])
        assert (await client.get(USERS, headers=reader)).status_code == 200
        denied = await client.post(USERS, json={"username": "z", "role": "viewer"}, headers=reader)
        assert denied.status_code == 403

    async def test_bad_token_requests(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        """Duplicate name 409, past expiry 400, scope beyond the role 400, unknown scope 422,
        unknown id 404, a token cannot mint tokens (403)."""
        first = await create_token(client, admin.headers, "dup")
        dup = await create_token(client, admin.headers, "dup")
        assert dup.status_code == 409
        past = await create_token(client, admin.headers, "p", expires_at="2000-01-01T00:00:00Z")
        assert past.status_code == 400
        unknown = await create_token(client, admin.headers, "u", scopes=["root:all"])
        assert unknown.status_code == 422
        missing = await client.delete(f"{TOKENS}/{uuid.uuid4()}", headers=admin.headers)
        assert missing.status_code == 404
        minted = await create_token(client, bearer(first.json()["token"]), "m")
        assert minted.status_code == 403

    async def test_viewer_cannot_scope_beyond_own_role(
        self, client: httpx.AsyncClient, viewer: Credentials
    ) -> None:
        response = await create_token(client, viewer.headers, "up", scopes=["user:admin"])
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_scope"

    async def test_odd_token_names_round_trip(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """SQL meta-characters and unicode in a name are data, not syntax."""
        name = "rob'); DROP TABLE api_token;-- «ключ» 🔑"
        created = await create_token(client, admin.headers, name)
        assert created.status_code == 201
        listed = await client.get(TOKENS, headers=admin.headers)
        assert [t["name"] for t in listed.json()] == [name]
        control = await create_token(client, admin.headers, "bad\x00name")
        assert control.status_code == 422


class TestUsers:
    async def test_create_list_get(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        created = await add_user(client, admin.headers, "Zoë.Müller", "operator")
        assert created.status_code == 201, created.text
        assert created.json()["username"] == "zoë.müller"
        assert created.json()["generated_password"] is None
        listed = await client.get(USERS, headers=admin.headers)
        assert [u["username"] for u in listed.json()["items"]] == ["root", "zoë.müller"]
        one = await client.get(f"{USERS}/ZOË.MÜLLER", headers=admin.headers)
        assert one.json()["role"] == "operator"
        assert await login(client, "zoë.müller", USER_PASSWORD)

    async def test_generated_password_is_returned_once_and_works(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        created = await client.post(
            USERS, json={"username": "gen", "role": "viewer"}, headers=admin.headers
        )
        password = created.json()["generated_password"]
        assert len(password) >= 12
        assert await login(client, "gen", password)
        again = await client.get(f"{USERS}/gen", headers=admin.headers)
        assert "generated_password" not in again.json()

    async def test_pagination(self, client: httpx.AsyncClient, admin: Credentials) -> None:
        for index in range(5):
            await add_user(client, admin.headers, f"u{index}", "viewer")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await client.get(USERS, params=params, headers=admin.headers)).json()
            seen += [u["username"] for u in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["root", "u0", "u1", "u2", "u3", "u4"]
        bad = await client.get(USERS, params={"cursor": "%%%"}, headers=admin.headers)
        assert bad.status_code == 400

    @pytest.mark.parametrize(
        ("body", "status", "fragment"),
        [
            ({"username": "root", "password": USER_PASSWORD}, 409, "already exists"),
            ({"username": "ROOT", "password": USER_PASSWORD}, 409, "already exists"),
            ({"username": "new", "password": "short"}, 400, "at least 12"),
            ({"username": "samename1234", "password": "SameName1234"}, 400, "username"),
            ({"username": "new", "password": "aaaaaaaaaaaaaaa"}, 400, "different"),
            ({"username": "new", "role": "nosuchrole", "password": USER_PASSWORD}, 404, "no role"),
            ({"username": "bob'; DROP TABLE user;--"}, 422, "username must be"),
            ({"username": "a b"}, 422, "username must be"),
            ({"username": "x" * 65}, 422, "at most 64"),
            ({"username": "new", "admin": True}, 422, "admin"),
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
        """Each body (role viewer unless it names one) is refused with its status and why."""
        body = {"role": "viewer"} | body
        response = await client.post(USERS, json=body, headers=admin.headers)
        assert response.status_code == status, response.text
        assert fragment in response.json()["detail"]

    async def test_change_role_and_reset_password(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        await add_user(client, admin.headers, "dave", "viewer")
        changed = await client.put(
            f"{USERS}/dave/role", json={"role": "auditor"}, headers=admin.headers
        )
        assert changed.status_code == 200
        assert changed.json()["role"] == "auditor"
        reset = await client.post(f"{USERS}/dave/password", json={}, headers=admin.headers)
        assert reset.status_code == 200
        new_password = reset.json()["generated_password"]
        assert await login(client, "dave", new_password)
        refused = await client.post(LOGIN, json={"username": "dave", "password": USER_PASSWORD})
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
        await add_user(client, admin.headers, "second", "admin")
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
        await add_user(client, admin.headers, "sue", "support")
        sue = bearer(await login(client, "sue", USER_PASSWORD))
        assert (await client.get(USERS, headers=sue)).status_code == 200
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
        await client.put(f"{USERS}/sue/role", json={"role": "viewer"}, headers=admin.headers)
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
        created = await create_token(client, admin.headers)
        api_token = bearer(created.json()["token"])
        password = await change_password(
            client, api_token, DEFAULT_PASSWORD, "an attacker's choice"
        )
        assert password.status_code == 403
        other = await create_token(client, admin.headers, name="other")
        revoke = await client.delete(f"{TOKENS}/{other.json()['id']}", headers=api_token)
        assert revoke.status_code == 403
        assert "other than itself" in revoke.json()["detail"]
        listed = await client.get(TOKENS, headers=api_token)
        assert {t["name"] for t in listed.json()} >= {created.json()["name"], "other"}

    async def test_api_token_can_revoke_itself(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """`tgfleet logout`: a token ending its own access entrenches nothing."""
        created = await create_token(client, admin.headers)
        api_token = bearer(created.json()["token"])
        revoke = await client.delete(f"{TOKENS}/{created.json()['id']}", headers=api_token)
        assert revoke.status_code == 204
        assert (await client.get(TOKENS, headers=api_token)).status_code == 401
        listed = await client.get(TOKENS, headers=admin.headers)
        assert created.json()["id"] not in {t["id"] for t in listed.json()}

    async def test_wrong_current_password(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        response = await change_password(
            client, admin.headers, "not-the-password", "a brand new passphrase"
        )
        assert response.status_code == 403
        weak = await change_password(client, admin.headers, DEFAULT_PASSWORD, "short")
        assert weak.status_code == 400
        assert weak.json()["error"] == "weak_password"


class TestDeniedIsAudited:
    async def test_forbidden_request_leaves_a_denied_record(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        refused = await client.post(
            USERS, json={"username": "x", "role": "admin"}, headers=viewer.headers
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
