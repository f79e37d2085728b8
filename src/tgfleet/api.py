"""Mounts every router on the application."""

from __future__ import annotations

from fastapi import FastAPI

from tgfleet.audit.endpoints import router as audit_router
from tgfleet.auth.endpoints import auth_router, role_router, user_router
from tgfleet.health.endpoints import router as health_router

#: Routes that need no credentials. The RBAC test fails for any other open route.
OPEN_ROUTES = frozenset(
    {
        ("POST", "/api/v1/auth/login"),
        ("GET", "/livez"),
        ("GET", "/readyz"),
    }
)


def mount_routers(app: FastAPI) -> None:
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(user_router)
    app.include_router(role_router)
    app.include_router(audit_router)
