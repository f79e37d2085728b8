"""Every route's dependencies run on the event loop: FastAPI runs a plain ``def`` dependency
in its thread pool, a thread hop (and a wait for a free pool thread under load) per request
and per dependency, for work that never blocks (issue 14 item 11)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tgfleet.api import ROUTERS


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _runs_on_the_loop(call: Any) -> bool:
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    method = getattr(call, "__call__", None)  # noqa: B004 - a dependency instance's method
    return inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method)


def test_no_route_dependency_runs_in_the_thread_pool() -> None:
    """No dependency of any route (the auth guards, the security and request metadata
    they take, the database session) is a plain function FastAPI would hand to its thread
    pool: each would cost every request a thread hop."""
    sync: set[str] = set()
    for router in ROUTERS:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for dependency in _dependencies(route.dependant):
                if dependency.call is not None and not _runs_on_the_loop(dependency.call):
                    sync.add(getattr(dependency.call, "__qualname__", repr(dependency.call)))
    assert sync == set()
