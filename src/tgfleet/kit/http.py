"""FastAPI dependencies every router uses: the unit-of-work session and request metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.kit.context import request_id_var
from tgfleet.kit.db import unit_of_work


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; commits after the endpoint returns, before the response is
    sent (``scope="function"``), so a failed commit reaches the client as an error."""
    async with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]


async def get_read_only_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A consistent snapshot for long reads; does not take SQLite's write lock."""
    async with unit_of_work(request.app.state.sessionmaker, read_only=True) as session:
        yield session


ReadOnlyDbSession = Annotated[AsyncSession, Depends(get_read_only_db_session, scope="function")]


@dataclass(frozen=True, slots=True)
class RequestMeta:
    ip: str | None
    request_id: str | None


def get_request_meta(request: Request) -> RequestMeta:
    return RequestMeta(
        ip=request.client.host if request.client else None, request_id=request_id_var.get()
    )


Meta = Annotated[RequestMeta, Depends(get_request_meta)]
