"""Every console route, mounted by ``tgfleet.app`` after the API's (none is in the OpenAPI
document: the console is HTML, the API is the contract)."""

from __future__ import annotations

from fastapi import APIRouter

from tgfleet.console.routes.account import router as account_router
from tgfleet.console.routes.accounts import router as accounts_router
from tgfleet.console.routes.alerts import router as alerts_router
from tgfleet.console.routes.audit import router as audit_router
from tgfleet.console.routes.groups import router as groups_router
from tgfleet.console.routes.imports import router as imports_router
from tgfleet.console.routes.language import router as language_router
from tgfleet.console.routes.live import router as live_router
from tgfleet.console.routes.me import router as me_router
from tgfleet.console.routes.overview import router as overview_router
from tgfleet.console.routes.palette import router as palette_router
from tgfleet.console.routes.playbooks import router as playbooks_router
from tgfleet.console.routes.session import router as session_router
from tgfleet.console.routes.users import router as users_router
from tgfleet.console.routes.vault import router as vault_router
from tgfleet.console.routes.workers import router as workers_router

ROUTERS: tuple[APIRouter, ...] = (
    session_router,
    overview_router,
    accounts_router,
    account_router,
    imports_router,
    live_router,
    alerts_router,
    language_router,
    groups_router,
    audit_router,
    users_router,
    me_router,
    workers_router,
    palette_router,
    playbooks_router,
    vault_router,
)

#: Console routes a visitor reaches without a session.
OPEN_ROUTES = frozenset({("GET", "/login"), ("POST", "/login"), ("POST", "/language")})
