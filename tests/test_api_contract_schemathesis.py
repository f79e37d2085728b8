"""The API keeps its published contract under fuzzing (schemathesis), on SQLite and PostgreSQL.

A real server (uvicorn in a child process, the real app, a migrated database) is fuzzed
through every operation of its own OpenAPI document, as an admin and as a viewer, with
schema-conforming (positive) and schema-violating (negative) requests. Every response must
not be a 5xx, must have a status the document declares for that operation, and must match
the body schema declared for that status.

The number of examples per operation and mode is bounded (`EXAMPLES`, or
``TGFLEET_CONTRACT_EXAMPLES`` for a deeper local run) and the generation is derandomised:
the same requests every run, so a failure reproduces and CI stays inside its time budget.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_contract_server import LiveServer, live_server
from tests.conftest import Backend, fresh_database, make_settings
from tests.factories import DEFAULT_PASSWORD, create_user
from tgfleet.app import create_app

pytestmark = pytest.mark.contract

Case = schemathesis.Case[Any]

EXAMPLES = int(os.environ.get("TGFLEET_CONTRACT_EXAMPLES", "10"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
ROLES = ("admin", "viewer")
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
#: Unguessable user names: the fuzzer must not disable or re-role the callers themselves.
SUFFIX = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Target:
    server: LiveServer
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The OpenAPI document, as the app serves it (no database needed to build it)."""
    folder = tmp_path_factory.mktemp("openapi")
    app = create_app(make_settings(f"sqlite+aiosqlite:///{folder}/unused.db", folder))
    return app.openapi()


@pytest.fixture(scope="module")
async def target(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    """A live server on a fresh database of ``backend`` with one admin and one viewer."""
    folder = tmp_path_factory.mktemp(f"contract-{backend.name}")
    async with fresh_database(backend, folder) as db_url:
        data_dir = folder / "data"
        # The users are made by an in-process app of the same settings (its lifespan sets up
        # what services need, as in the suite's fixtures), stopped before the server starts.
        bootstrap = create_app(make_settings(db_url, data_dir))
        async with bootstrap.router.lifespan_context(bootstrap):
            for role in ROLES:
                await create_user(
                    bootstrap.state.sessionmaker,
                    bootstrap.state.security,
                    username=f"{role}-{SUFFIX}",
                    role=role,
                )
        async with live_server(db_url, data_dir) as server:
            tokens = {}
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                for role in ROLES:
                    login = await http.post(
                        "/api/v1/auth/login",
                        json={"username": f"{role}-{SUFFIX}", "password": DEFAULT_PASSWORD},
                    )
                    assert login.status_code == 200, login.text
                    tokens[role] = login.json()["access_token"]
            yield Target(server=server, tokens=tokens)


def _fuzz(operation: Any, mode: schemathesis.GenerationMode, call: Any) -> str | None:
    """Run ``EXAMPLES`` generated cases of ``operation``; the failure, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        call(case)

    try:
        run()
    except Unsatisfiable:
        if mode is schemathesis.GenerationMode.POSITIVE:
            return f"{operation.label}: no request can be generated"
        return None  # no parameters and no body: there is nothing to make invalid
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - each failure is reported
        return f"{operation.label} ({mode.value}):\n{exc}"
    return None


class TestContract:
    @pytest.mark.timeout(900)  # ~70 s here; the suite's 120 s default is for single tests
    @pytest.mark.parametrize("role", ROLES)
    def test_every_operation_keeps_its_contract(
        self, role: str, target: Target, document: dict[str, Any]
    ) -> None:
        """No 5xx, only declared statuses, and every body (errors included) matches the
        schema the document declares for it, for every operation, as ``role``."""
        schema = schemathesis.openapi.from_dict(document)
        headers = {"Authorization": f"Bearer {target.tokens[role]}"}
        failures: list[str] = []
        started = time.monotonic()
        with requests.Session() as session:

            def call(case: Case) -> None:
                case.call_and_validate(
                    base_url=target.server.base_url,
                    session=session,
                    headers=headers,
                    checks=CHECKS,
                    timeout=30,
                )

            operations = []
            for result in schema.get_all_operations():
                if isinstance(result, Err):
                    failures.append(f"an operation cannot be tested: {result.err()}")
                    continue
                operation = result.ok()
                operations.append(operation)
                for mode in MODES:
                    failure = _fuzz(operation, mode, call)
                    if failure is not None:
                        failures.append(failure)
        elapsed = time.monotonic() - started
        print(f"contract: {len(operations)} operations as {role} in {elapsed:.1f} s")
        assert len(operations) == len([op for ops in document["paths"].values() for op in ops])
        assert not failures, "\n\n".join(failures)
        # The 400 backstop for values the database refuses must not hide a gap in the guard.
        log = target.server.log.read_text(errors="replace")
        assert "http.database_refused_value" not in log
        assert "http.unhandled" not in log
