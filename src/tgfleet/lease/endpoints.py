"""HTTP API for the workers sharing the fleet (PostgreSQL leases)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from tgfleet.auth.dependencies import Requires
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.kit.http import DbSession
from tgfleet.kit.schema import Schema
from tgfleet.lease import service as lease_service

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])

AccountReader = Annotated[Principal, Requires(Permission.ACCOUNT_READ)]


class WorkerRead(Schema):
    id: str
    epoch: int = Field(description="grows at every (re)registration; fences the older run")
    host: str
    pid: int
    version: str
    capacity: int
    state: str = Field(description="running, or stopped after a drain")
    alive: bool = Field(description="its lease has not expired")
    accounts_held: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime


class WorkerList(Schema):
    items: list[WorkerRead]
    unassigned: int = Field(description="accounts desired running that no live worker holds")


@router.get("", response_model=WorkerList)
async def list_workers(_principal: AccountReader, session: DbSession) -> WorkerList:
    """Every registered worker with its heartbeat, capacity and the accounts it holds.
    Empty on SQLite, where `tgfleet run` is the one process running accounts."""
    workers = await lease_service.list_workers(session)
    return WorkerList(
        items=[
            WorkerRead(
                id=w.id,
                epoch=w.epoch,
                host=w.host,
                pid=w.pid,
                version=w.version,
                capacity=w.capacity,
                state=w.state,
                alive=w.alive,
                accounts_held=w.held,
                started_at=w.started_at,
                heartbeat_at=w.heartbeat_at,
                expires_at=w.expires_at,
            )
            for w in workers
        ],
        unassigned=await lease_service.unassigned(session),
    )
