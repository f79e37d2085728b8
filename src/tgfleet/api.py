"""Mounts every router on the application and publishes the errors each route answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from tgfleet.account.endpoints import groups_router
from tgfleet.account.endpoints import router as account_router
from tgfleet.alert.endpoints import router as alert_router
from tgfleet.audit.endpoints import router as audit_router
from tgfleet.auth.endpoints import auth_router, role_router, user_router
from tgfleet.health.endpoints import router as health_router
from tgfleet.kit.schema import ErrorBody
from tgfleet.lease.endpoints import router as worker_router
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
    groups_router,
    playbook_router,
    worker_router,
    alert_router,
)


def mount_routers(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)


#: What each error status means, as published for every route that can answer it.
ERROR_STATUSES: dict[int, str] = {
    400: "Bad request: a control character in the URL, or input the service refuses",
    401: "Unauthorized: no credentials, or credentials that are not (or no longer) valid",
    403: "Forbidden: the credentials lack the permission this route needs",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Payload too large: the request body is over the limit",
    422: "Unprocessable: the request does not match its schema (the detail names the field)",
    429: "Too many failed logins: retry after the Retry-After header's seconds",
    503: "Unavailable: the database or the runtime cannot answer now; nothing was changed",
}
LOGIN = ("POST", "/api/v1/auth/login")
_UNAUTHENTICATED = frozenset({"/livez", "/readyz", "/health", "/healthz"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_statuses(method: str, route: APIRoute) -> set[int]:
    """The error statuses ``method`` on ``route`` can answer. Any route can be refused for
    its URL (400) or fail to reach the database (503)."""
    statuses = {400, 503}
    dependant = route.dependant
    if dependant.path_params or dependant.query_params or dependant.body_params:
        statuses.add(422)
    if dependant.path_params or dependant.body_params:
        statuses.add(404)  # what the path or the body names (ids, a receiver) may not exist
    if route.path not in _UNAUTHENTICATED:
        statuses.add(401)  # open routes too: login's wrong password, /metrics' token
    if (method, route.path) not in OPEN_ROUTES:
        statuses.add(403)
    if (method, route.path) == LOGIN:
        statuses |= {413, 429}
    elif method in _WRITES:
        statuses |= {409, 413}
    return statuses


def declare_errors(document: dict[str, Any]) -> None:
    """Declare ``{"error", "detail"}`` (`ErrorBody`) for every error each operation can
    answer, in place of FastAPI's default 422 body (``detail`` as a list), which this API
    never sends. Responses a route declares itself (a health document's 503) are kept."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ErrorBody.model_json_schema()
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    routes = {
        (method, route.path): route
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if _is_default_validation(responses.get("422")):
                del responses["422"]
            route = routes.get((method.upper(), path))
            if route is None:
                continue
            for status in sorted(error_statuses(method.upper(), route)):
                responses.setdefault(
                    str(status), {"description": ERROR_STATUSES[status], "content": content}
                )


def _is_default_validation(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def install_openapi(app: FastAPI) -> None:
    """Serve the OpenAPI document with `declare_errors` applied (built once, on first use)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()  # FastAPI keeps it in app.openapi_schema: edited once, in place
        declare_errors(document)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
