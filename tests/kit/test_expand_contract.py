"""Every migration is additive for the tables a worker reads, on SQLite and PostgreSQL
(``tests/migration_steps.py``), except the past ones allow-listed below with their reason:
the previous release's workers keep running against the next schema during a rollout."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import Backend, _pg_exec
from tests.harness import database_url
from tests.migration_steps import WORKER_TABLES, Column, Step, reflect, revisions, violations, walk

# Past migrations that contracted a worker table, with why that was acceptable then. A new
# entry needs a release in between that stopped reading what it removes (docs/deploy.md).
# None so far: 0001-0012 only added tables, columns, indexes and constraints to them.
ALLOWED: dict[str, str] = {}


@pytest.fixture
async def empty_url(backend: Backend, tmp_path: Path) -> str:
    """An empty database on the backend (the template is already migrated: not that)."""
    if backend.name == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'walk.db'}"
    assert backend.admin_dsn is not None
    assert backend.base_url is not None
    name = f"{backend.template}_walk"
    await _pg_exec(backend.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _pg_exec(backend.admin_dsn, f'CREATE DATABASE "{name}"')
    return database_url(backend.base_url, name)


@pytest.fixture
async def steps(empty_url: str, backend: Backend) -> list[Step]:
    try:
        return await walk(empty_url)
    finally:
        if backend.admin_dsn is not None:
            await _pg_exec(
                backend.admin_dsn, f'DROP DATABASE IF EXISTS "{backend.template}_walk" WITH (FORCE)'
            )


async def test_every_migration_is_additive_for_the_worker_tables(steps: list[Step]) -> None:
    found = {s.revision: v for s in steps if (v := violations(s)) and s.revision not in ALLOWED}
    assert not found, found
    assert [s.revision for s in steps] == revisions()
    assert set(steps[-1].after) == WORKER_TABLES, "a worker table is misnamed"
    assert set(ALLOWED) <= set(revisions()), "an allow-listed revision no longer exists"
    touched = {s.revision: s.touched() for s in steps if s.touched()}
    print(f"worker tables touched per migration: {touched}")


async def test_the_check_sees_a_contraction(db_url: str) -> None:
    """The check itself, on the head's reflected schema: a dropped column, a new NOT NULL
    column without a default, a narrowed type, a column made NOT NULL and a dropped table
    are each reported; a widened type and a nullable new column are not."""
    head = await reflect(db_url)
    account, lease = head["account"], head["account_lease"]
    nullable = next(n for n, c in account.columns.items() if c.nullable and n != "tg_user_id")
    label = account.columns["label"]
    columns = {n: c for n, c in account.columns.items() if n != "tg_user_id"}
    columns[nullable] = replace(columns[nullable], nullable=False)
    columns["label"] = replace(label, type="VARCHAR(1)")
    columns["added_required"] = Column("INTEGER", nullable=False, server_default=False)
    columns["added_optional"] = Column("INTEGER", nullable=True, server_default=False)
    contracted = {**head, "account": replace(account, columns=columns)}
    del contracted["account_lease"]
    found = violations(Step("contracting", head, contracted))
    assert sorted(found) == sorted(
        [
            "account.tg_user_id: column dropped (or renamed)",
            f"account.{nullable}: made NOT NULL",
            f"account.label: type {label.type} -> VARCHAR(1) (not a widening)",
            "account.added_required: new NOT NULL column without a server default",
            "account_lease: table dropped",
        ]
    ), found
    assert lease.columns  # reflected at all
    assert label.type == "VARCHAR(200)", label
    widened = {**account.columns, "label": replace(label, type="VARCHAR(400)")}
    wider = {**head, "account": replace(account, columns=widened)}
    assert violations(Step("widening", head, wider)) == []
