"""FastAPI dependencies every router uses: the unit-of-work session and request metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.kit.context import request_id_var
from tgfleet.kit.db import unit_of_work

#: Methods whose unit of work starts as a read (see ``get_db_session``).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READS_ONLY = "__tgfleet_reads_only__"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class _HasSessionmaker(Protocol):
    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...


def sessionmaker_of(request: Request) -> async_sessionmaker[AsyncSession]:
    """The sessionmaker of the process serving ``request`` (its ``tgfleet.components``)."""
    components: _HasSessionmaker = request.app.state.components
    return components.sessionmaker


def reads_only(endpoint: Endpoint) -> Endpoint:
    """Mark a POST/PUT route whose work only reads (its unit of work starts as a read, as a
    GET's does). Put it under the ``@router.post(...)`` line."""
    setattr(endpoint, _READS_ONLY, True)
    return endpoint


async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; commits after the endpoint returns, before the response is
    sent (``scope="function"``), so a failed commit reaches the client as an error.

    A GET or HEAD request (or a route marked ``reads_only``) starts as a read: on SQLite it
    never waits behind a writer, and its first write (an audited read, a token's last use, a
    refusal's audit record) waits for the write lock then. Any other request takes the write
    lock up front (``kit.db``)."""
    route = request.scope.get("route")
    deferred = request.method in READ_METHODS or getattr(
        getattr(route, "endpoint", None), _READS_ONLY, False
    )
    async with unit_of_work(sessionmaker_of(request), deferred=deferred) as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]


async def get_read_only_db_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A consistent snapshot for long reads; does not take SQLite's write lock."""
    async with unit_of_work(sessionmaker_of(request), read_only=True) as session:
        yield session


ReadOnlyDbSession = Annotated[AsyncSession, Depends(get_read_only_db_session, scope="function")]


@dataclass(frozen=True, slots=True)
class RequestMeta:
    ip: str | None
    request_id: str | None


async def get_request_meta(request: Request) -> RequestMeta:
    """async: FastAPI runs a plain ``def`` dependency in its thread pool (a thread hop per
    request); here the context variable is read in the request's own context."""
    return RequestMeta(
        ip=request.client.host if request.client else None, request_id=request_id_var.get()
    )


Meta = Annotated[RequestMeta, Depends(get_request_meta)]
