"""`Components`: what a running process hands its request layer (the API's routes, the
worker's probe-and-metrics port), built by `tgfleet.process` and reached by a route through
one typed dependency, ``AppComponents``.

Routes of every domain read it, so it sits beside the domains; it names their types for the
type checker only (nothing here imports a domain at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet.config import Settings

if TYPE_CHECKING:
    from tgfleet.account.live import Broadcaster
    from tgfleet.alert.runtime import AlertingRuntime
    from tgfleet.auth.service import Security
    from tgfleet.health.service import HealthService
    from tgfleet.telemetry.service import FleetGauges
    from tgfleet.vault.service import Vault


@dataclass(frozen=True, slots=True)
class Components:
    """A running process's parts its routes use; ``None`` for one its role does not run."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    vault: Vault
    health: HealthService
    #: Password hashing and tokens: the API roles (a worker serves no authenticated route).
    security: Security | None = None
    #: The fleet-wide gauges read from the database: the API roles.
    fleet_gauges: FleetGauges | None = None
    #: The alert evaluator and its receivers: API roles with alerting on.
    alerting: AlertingRuntime | None = None
    #: Sets the account runtime's own gauges, at each scrape: roles that run accounts.
    observe_runtime: Callable[[], None] | None = None
    #: The console's live feed (account events fanned out to open pages): the API roles.
    broadcaster: Broadcaster | None = None

    @property
    def auth(self) -> Security:
        """``security``, for the routes that authenticate (mounted in API roles only)."""
        if self.security is None:
            msg = "this process serves no authenticated route"
            raise RuntimeError(msg)
        return self.security


def publish(app: FastAPI, components: Components) -> None:
    """Hand a running process's components to its routes (``tgfleet.components``).

    Their parts are also set one by one, for tests and benchmarks that reach into a running
    app (``app.state.sessionmaker``); no route reads those."""
    app.state.components = components
    app.state.settings = components.settings
    app.state.engine = components.engine
    app.state.sessionmaker = components.sessionmaker
    app.state.security = components.security
    app.state.vault = components.vault
    app.state.health = components.health
    app.state.alerting = components.alerting


async def get_components(request: Request) -> Components:
    """The components of the process serving ``request`` (async: no thread hop)."""
    components: Components = request.app.state.components
    return components


AppComponents = Annotated[Components, Depends(get_components)]
