"""RBAC: every route declares a permission, and the whole route x role matrix holds.

The expectations here are written out by hand, independently of the code: a route added
without a row in ``ROUTE_PERMISSIONS`` fails ``test_every_route_is_in_the_matrix``, and a
route whose guard differs from its row fails ``test_declared_guard_matches_the_matrix``.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, user_with_role
from tgfleet.api import OPEN_ROUTES, ROUTERS
from tgfleet.auth.dependencies import PermissionGuard
from tgfleet.auth.service import Security

OPEN = "open"
AUTHENTICATED = "authenticated"

#: Method, path, and the permission code, AUTHENTICATED (any logged-in user) or OPEN.
#: /metrics is open unless TGFLEET_METRICS_TOKEN is set (tests/telemetry).
ROUTE_TABLE = """
POST    /api/v1/auth/login                                  open
GET     /livez                                              open
GET     /readyz                                             open
GET     /health                                             open
GET     /healthz                                            open
GET     /metrics                                            open
GET     /api/v1/alerts                                      alert:read
GET     /api/v1/alerts/history                              alert:read
POST    /api/v1/alerts/test                                 alert:write
GET     /api/v1/silences                                    alert:read
POST    /api/v1/silences                                    alert:write
DELETE  /api/v1/silences/{silence_id}                       alert:write
GET     /api/v1/auth/me                                     authenticated
POST    /api/v1/auth/password                               authenticated
POST    /api/v1/auth/tokens                                 authenticated
GET     /api/v1/auth/tokens                                 authenticated
DELETE  /api/v1/auth/tokens/{token_id}                      authenticated
POST    /api/v1/users                                       user:admin
GET     /api/v1/users                                       user:read
GET     /api/v1/users/{username}                            user:read
POST    /api/v1/users/{username}/disable                    user:admin
POST    /api/v1/users/{username}/enable                     user:admin
PUT     /api/v1/users/{username}/role                       user:admin
POST    /api/v1/users/{username}/password                   user:admin
GET     /api/v1/permissions                                 user:read
GET     /api/v1/roles                                       user:read
GET     /api/v1/roles/{name}                                user:read
POST    /api/v1/roles                                       user:admin
PATCH   /api/v1/roles/{name}                                user:admin
DELETE  /api/v1/roles/{name}                                user:admin
GET     /api/v1/audit                                       audit:read
GET     /api/v1/audit/verify                                audit:read
POST    /api/v1/audit/export                                audit:export
GET     /api/v1/accounts                                    account:read
GET     /api/v1/workers                                     account:read
GET     /api/v1/accounts/{account_id}                       account:read
POST    /api/v1/accounts/bulk                               account:control
POST    /api/v1/accounts/{account_id}/start                 account:control
POST    /api/v1/accounts/{account_id}/stop                  account:control
POST    /api/v1/accounts/{account_id}/restart               account:control
GET     /api/v1/accounts/{account_id}/events                account:read
GET     /api/v1/accounts/{account_id}/groups                account:read
PUT     /api/v1/accounts/{account_id}/groups/{chat_id}      account:write
DELETE  /api/v1/accounts/{account_id}/groups/{chat_id}      account:write
POST    /api/v1/accounts/groups/bulk                        account:write
GET     /api/v1/groups                                      account:read
POST    /api/v1/accounts/import                             session:import
POST    /api/v1/accounts/{account_id}/session/export        session:export
DELETE  /api/v1/accounts/{account_id}/session               session:delete
PUT     /api/v1/accounts/{account_id}/session               session:import
POST    /api/v1/vault/rotate                                vault:rotate
GET     /api/v1/vault/status                                vault:read
GET     /api/v1/playbooks                                   playbook:read
POST    /api/v1/playbooks                                   playbook:write
GET     /api/v1/playbooks/{playbook_id}                     playbook:read
PUT     /api/v1/playbooks/{playbook_id}                     playbook:write
DELETE  /api/v1/playbooks/{playbook_id}                     playbook:write
GET     /api/v1/playbooks/{playbook_id}/versions            playbook:read
GET     /api/v1/playbooks/{playbook_id}/versions/{version}  playbook:read
POST    /api/v1/playbooks/{playbook_id}/dry-run             playbook:read
"""
ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    (method, path): permission
    for method, path, permission in (row.split() for row in ROUTE_TABLE.strip().splitlines())
}

#: Which of the permissions used above each built-in role holds (written out by hand).
ROLE_HOLDS: dict[str, set[str]] = {
    "admin": {
        "playbook:read",
        "playbook:write",
        "user:read",
        "user:admin",
        "audit:read",
        "audit:export",
        "account:read",
        "account:write",
        "account:control",
        "session:import",
        "session:export",
        "session:delete",
        "vault:rotate",
        "vault:read",
        "alert:read",
        "alert:write",
    },
    "operator": {
        "playbook:read",
        "playbook:write",
        "account:read",
        "account:write",
        "account:control",
        "session:import",
        "alert:read",
        "alert:write",
    },
    "viewer": {"playbook:read", "account:read", "alert:read"},
    "auditor": {
        "playbook:read",
        "user:read",
        "audit:read",
        "account:read",
        "vault:read",
        "alert:read",
    },
}

DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def api_routes(app: FastAPI) -> list[tuple[str, str, APIRoute]]:
    """Every (method, path, route) of the mounted routers, cross-checked against the
    OpenAPI document so that no route escapes the walk."""
    routes: list[tuple[str, str, APIRoute]] = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            routes.extend((method, route.path, route) for method in sorted(route.methods or ()))
    published = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert published == {(method, path) for method, path, _ in routes}
    return routes


def check_guards(
    routes: list[tuple[str, str, APIRoute]],
    permissions: dict[tuple[str, str], str],
    open_routes: frozenset[tuple[str, str]],
    guard_type: type[PermissionGuard] = PermissionGuard,
) -> None:
    """Every route declares exactly the permission ``permissions`` names (``AUTHENTICATED``:
    none, but a credential), through guards of ``guard_type``; ``OPEN`` ones none at all."""
    for method, path, route in routes:
        expected = permissions[(method, path)]
        guards = declared_guards(route.dependant)
        if expected == OPEN:
            assert guards == [], f"{method} {path} is meant to be open"
            assert (method, path) in open_routes
            continue
        assert guards, f"{method} {path} declares no permission"
        assert all(isinstance(guard, guard_type) for guard in guards), (method, path)
        codes = {g.permission.value if g.permission else AUTHENTICATED for g in guards}
        assert codes == {expected}, f"{method} {path}: {codes} != {expected}"


def declared_guards(dependant: Dependant) -> list[PermissionGuard]:
    found: list[PermissionGuard] = []
    for dependency in dependant.dependencies:
        call: object = dependency.call  # typed as a plain callable; a guard is an instance
        if isinstance(call, PermissionGuard):
            found.append(call)
        found.extend(declared_guards(dependency))
    return found


@pytest.fixture
async def people(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> dict[str, Credentials]:
    return {
        role: await user_with_role(client, sessionmaker, security, role)
        for role in ("admin", "operator", "viewer", "auditor")
    }


class TestDeclarations:
    async def test_every_route_is_in_the_matrix(self, app: FastAPI) -> None:
        routes = {(method, path) for method, path, _ in api_routes(app)}
        assert routes == set(ROUTE_PERMISSIONS)

    async def test_declared_guard_matches_the_matrix(self, app: FastAPI) -> None:
        """Every route but the open ones declares exactly the expected permission."""
        check_guards(api_routes(app), ROUTE_PERMISSIONS, OPEN_ROUTES)

    async def test_only_login_health_and_docs_are_open(self, app: FastAPI) -> None:
        open_paths = {path for _, path in OPEN_ROUTES}
        assert open_paths <= {
            "/api/v1/auth/login",
            "/livez",
            "/readyz",
            "/health",
            "/healthz",
            "/metrics",
        }


def _concrete(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}", lambda m: str(uuid.uuid4()) if "id" in m.group(0) else "someone", path
    )


class TestMatrix:
    async def test_route_by_role(
        self, app: FastAPI, client: httpx.AsyncClient, people: dict[str, Credentials]
    ) -> None:
        """Anonymous gets 401 everywhere but open routes; a role without the permission gets
        403; a role with it gets past the guard (any status but 401/403)."""
        failures = []
        for method, path, _ in api_routes(app):
            expected = ROUTE_PERMISSIONS[(method, path)]
            url = _concrete(path)
            body: dict[str, object] | None = {} if method in {"POST", "PUT", "PATCH"} else None
            anonymous = await client.request(method, url, json=body)
            if expected == OPEN:
                if anonymous.status_code in {401, 403}:
                    failures.append(f"anonymous {method} {path}: {anonymous.status_code}")
                continue
            if anonymous.status_code != 401:
                failures.append(f"anonymous {method} {path}: {anonymous.status_code} != 401")
            for role, credentials in people.items():
                response = await client.request(method, url, json=body, headers=credentials.headers)
                allowed = expected == AUTHENTICATED or expected in ROLE_HOLDS[role]
                if allowed and response.status_code in {401, 403}:
                    failures.append(
                        f"{role} {method} {path}: {response.status_code}, expected allowed"
                    )
                if not allowed and response.status_code != 403:
                    failures.append(f"{role} {method} {path}: {response.status_code} != 403")
        assert failures == []
