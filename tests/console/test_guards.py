"""Every console route declares its guard: the cookie session and the same permission code
as its API twin (a hidden button is never the only guard). A new route must be added here."""

from __future__ import annotations

from fastapi.routing import APIRoute

from tests.test_rbac import AUTHENTICATED, OPEN, check_guards
from tgfleet.console.guard import ConsoleGuard
from tgfleet.console.routes import OPEN_ROUTES, ROUTERS

SIGNED_IN = AUTHENTICATED

#: (method, path) -> the permission the route needs.
CONSOLE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("GET", "/login"): OPEN,
    ("POST", "/login"): OPEN,
    ("POST", "/language"): OPEN,
    ("POST", "/logout"): SIGNED_IN,
    ("GET", "/palette"): SIGNED_IN,
    ("GET", "/"): "account:read",
    ("GET", "/accounts"): "account:read",
    ("GET", "/live"): "account:read",
    ("POST", "/accounts/bulk/preview"): "account:control",
    ("POST", "/accounts/bulk"): "account:control",
    ("GET", "/import"): "session:import",
    ("POST", "/import"): "session:import",
    ("GET", "/accounts/{account_id}"): "account:read",
    ("POST", "/accounts/{account_id}/control"): "account:control",
    ("POST", "/accounts/{account_id}/groups/{chat_id}"): "account:write",
    ("POST", "/accounts/{account_id}/session"): "session:import",
    ("POST", "/accounts/{account_id}/session/export"): "session:export",
    ("POST", "/accounts/{account_id}/session/erase"): "session:delete",
    # alerts (routes/alerts.py)
    ("GET", "/alerts"): "alert:read",
    ("GET", "/alerts/silences"): "alert:read",
    ("GET", "/alerts/silences/new"): "alert:write",
    ("POST", "/alerts/silences"): "alert:write",
    ("POST", "/alerts/silences/{silence_id}/expire"): "alert:write",
    ("GET", "/alerts/history"): "alert:read",
    ("POST", "/alerts/test"): "alert:write",
    # groups, workers, health (helper grp)
    ("GET", "/groups"): "account:read",
    ("POST", "/groups/preview"): "account:write",
    ("POST", "/groups/bulk"): "account:write",
    ("GET", "/workers"): "account:read",
    ("GET", "/health/checks"): SIGNED_IN,
    # audit and vault pages
    ("GET", "/audit"): "audit:read",
    ("GET", "/audit/verify"): "audit:read",
    ("GET", "/audit/{seq}"): "audit:read",
    ("POST", "/audit/export"): "audit:export",
    # users, roles and the own-account page (routes/users.py, routes/me.py)
    ("GET", "/users"): "user:read",
    ("POST", "/users"): "user:admin",
    ("POST", "/users/{username}/disable"): "user:admin",
    ("POST", "/users/{username}/enable"): "user:admin",
    ("POST", "/users/{username}/role"): "user:admin",
    ("POST", "/users/{username}/password"): "user:admin",
    ("GET", "/roles"): "user:read",
    ("POST", "/roles"): "user:admin",
    ("POST", "/roles/{name}"): "user:admin",
    ("POST", "/roles/{name}/delete"): "user:admin",
    ("GET", "/me"): SIGNED_IN,
    ("POST", "/me/password"): SIGNED_IN,
    ("POST", "/me/tokens"): SIGNED_IN,
    ("POST", "/me/tokens/{token_id}/revoke"): SIGNED_IN,
    ("POST", "/me/sessions/{session_id}/revoke"): SIGNED_IN,
    # Playbooks (issue 17 item 1)
    ("GET", "/playbooks"): "playbook:read",
    ("POST", "/playbooks"): "playbook:write",
    ("POST", "/playbooks/check"): "playbook:write",
    ("GET", "/playbooks/{playbook_id}"): "playbook:read",
    ("POST", "/playbooks/{playbook_id}"): "playbook:write",
    ("POST", "/playbooks/{playbook_id}/check"): "playbook:write",
    ("GET", "/playbooks/{playbook_id}/diff"): "playbook:read",
    ("POST", "/playbooks/{playbook_id}/groups/{account_id}/{chat_id}"): "account:write",
    ("POST", "/playbooks/{playbook_id}/dry-run"): "playbook:read",
    ("GET", "/vault"): "vault:read",
    ("POST", "/vault/rotate"): "vault:rotate",
    ("GET", "/vault/rotation/events"): "vault:read",
}


def console_routes() -> list[tuple[str, str, APIRoute]]:
    found: list[tuple[str, str, APIRoute]] = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            found.extend((method, route.path, route) for method in sorted(route.methods or ()))
    return found


def test_every_console_route_is_declared_with_its_permission() -> None:
    routes = console_routes()
    assert {(method, path) for method, path, _ in routes} == set(CONSOLE_PERMISSIONS)
    check_guards(routes, CONSOLE_PERMISSIONS, OPEN_ROUTES, ConsoleGuard)
