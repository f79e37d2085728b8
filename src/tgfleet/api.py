"""Mounts every router on the application."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from tgfleet.account.endpoints import router as account_router
from tgfleet.alert.endpoints import router as alert_router
from tgfleet.audit.endpoints import router as audit_router
from tgfleet.auth.endpoints import auth_router, role_router, user_router
from tgfleet.fleet.endpoints import router as worker_router
from tgfleet.health.endpoints import router as health_router
from tgfleet.playbook.endpoints import router as playbook_router
from tgfleet.telemetry.endpoints import router as telemetry_router
from tgfleet.vault.endpoints import router as vault_router

#: Routes that need no credentials. The RBAC test fails for any other open route.
OPEN_ROUTES = frozenset(
    {
        ("POST", "/api/v1/auth/login"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
        ("GET", "/health"),  # states and timings, no secrets (docs/health.md)
        ("GET", "/healthz"),  # alias of /health
        ("GET", "/metrics"),  # TGFLEET_METRICS_TOKEN, when set, is checked by the route
    }
)


#: Every router of the API, in mounting order (the RBAC test walks these).
ROUTERS: tuple[APIRouter, ...] = (
    health_router,
    telemetry_router,
    auth_router,
    user_router,
    role_router,
    audit_router,
    vault_router,  # before accounts: /accounts/import must win over /accounts/{id}
    account_router,
    playbook_router,
    worker_router,
    alert_router,
)


def mount_routers(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
