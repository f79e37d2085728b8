"""The OpenAPI document tells the truth about errors and bounds every parameter.

Every error the API answers is ``{"error", "detail"}``; the document used to declare
FastAPI's default 422 body (``detail`` as a list of objects) and no other error, so a client
generated from it could not read a single error. Query and path parameters are where the
request-body guard (``RequestSchema``) does not reach: each integer must declare a range a
database column holds and each datetime must refuse what overflows in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError

from tests.conftest import make_settings
from tgfleet.api import OPEN_ROUTES, ROUTERS
from tgfleet.app import create_app
from tgfleet.kit.schema import INT64_MAX, INT64_MIN

ERROR_REF = "#/components/schemas/ErrorBody"
#: The health probes answer 503 with their own document (docs/health.md), not an error.
OWN_503 = {"/readyz", "/health", "/healthz"}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{folder}/unused.db", folder))
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _schema_ref(response: dict[str, Any]) -> str | None:
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    return ref if isinstance(ref, str) else None


def _routes() -> list[APIRoute]:
    return [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


class TestErrorBodies:
    def test_fastapi_default_validation_body_is_gone(self, document: dict[str, Any]) -> None:
        """Neither HTTPValidationError nor ValidationError is published; ErrorBody is, with
        both fields required strings."""
        schemas = document["components"]["schemas"]
        assert "HTTPValidationError" not in schemas
        assert "ValidationError" not in schemas
        error = schemas["ErrorBody"]
        assert error["required"] == ["error", "detail"]
        assert {field["type"] for field in error["properties"].values()} == {"string"}

    def test_every_error_response_is_the_error_body(self, document: dict[str, Any]) -> None:
        """Every 4xx and 5xx of every operation is ErrorBody (the probes' 503 excepted)."""
        wrong = [
            f"{method} {path} {status}"
            for method, path, operation in _operations(document)
            for status, response in operation["responses"].items()
            if status[0] in "45"
            and not (status == "503" and path in OWN_503)
            and _schema_ref(response) != ERROR_REF
        ]
        assert not wrong

    def test_each_operation_declares_the_errors_it_can_answer(
        self, document: dict[str, Any]
    ) -> None:
        """400 and 503 everywhere; 401 and 403 where credentials are needed; 422 where
        there is input; 429 on login."""
        for method, path, operation in _operations(document):
            declared = set(operation["responses"])
            assert {"400", "503"} <= declared, (method, path)
            if (method, path) not in OPEN_ROUTES:
                assert {"401", "403"} <= declared, (method, path)
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in declared, (method, path)
        login = document["paths"]["/api/v1/auth/login"]["post"]["responses"]
        assert {"401", "422", "429"} <= set(login)

    async def test_a_validation_error_matches_the_declared_body(
        self, client: httpx.AsyncClient
    ) -> None:
        """A real 422 and a real 400 from the input guard carry exactly the declared
        fields, as strings."""
        invalid = await client.post("/api/v1/auth/login", json={"username": 1})
        guarded = await client.get("/livez?probe=%00")
        for response, status in ((invalid, 422), (guarded, 400)):
            assert response.status_code == status
            body = response.json()
            assert set(body) == {"error", "detail"}
            assert all(isinstance(value, str) for value in body.values())


class TestParameterBounds:
    def test_integer_parameters_fit_a_bigint(self, document: dict[str, Any]) -> None:
        """Every integer query or path parameter declares a minimum and maximum inside the
        signed 64-bit range (``99999999999999999999`` as a version answered 500)."""
        unbounded = []
        for method, path, operation in _operations(document):
            for parameter in operation.get("parameters", []):
                for schema in [parameter["schema"], *parameter["schema"].get("anyOf", [])]:
                    if schema.get("type") != "integer":
                        continue
                    low, high = schema.get("minimum"), schema.get("maximum")
                    if low is None or high is None or low < INT64_MIN or high > INT64_MAX:
                        unbounded.append(f"{method} {path} {parameter['name']}")
        assert not unbounded

    def test_datetime_parameters_refuse_what_overflows_in_utc(self) -> None:
        """Every datetime query or path parameter refuses ``0001-01-01T00:00:00+14:00``
        (year 0 in UTC: an OverflowError in the query, a 500) with a validation error."""
        checked = 0
        for route in _routes():
            for parameter in route.dependant.query_params + route.dependant.path_params:
                annotation = parameter.field_info.annotation
                if annotation is None or datetime not in _types(annotation):
                    continue
                checked += 1
                with pytest.raises(ValidationError):
                    TypeAdapter(annotation).validate_python("0001-01-01T00:00:00+14:00")
        assert checked >= 2  # /audit since and until


def _types(annotation: Any) -> set[Any]:
    found = {annotation}
    for argument in get_args(annotation):
        found |= _types(argument)
    return found
