"""``GET /metrics``: the Prometheus text exposition of this process.

Open by default, like most exporters (the series carry no secrets and, unless
``TGFLEET_METRICS_PER_ACCOUNT`` is on, no account names); with ``TGFLEET_METRICS_TOKEN`` set,
a scrape must send ``Authorization: Bearer <token>`` (Prometheus' ``authorization``
scrape setting).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tgfleet import metrics
from tgfleet.exceptions import Unauthorized
from tgfleet.telemetry.service import FleetGauges

router = APIRouter(tags=["telemetry"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request) -> Response:
    """Every tgfleet metric of this process (and, on the API, the fleet-wide gauges read
    from the database, cached a few seconds)."""
    token = request.app.state.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized(
                "a metrics scrape needs Authorization: Bearer <TGFLEET_METRICS_TOKEN>"
            )
    fleet: FleetGauges | None = getattr(request.app.state, "fleet_gauges", None)
    if fleet is not None:
        await fleet.refresh()
    supervisor = getattr(request.app.state, "supervisor", None)
    if supervisor is not None:  # the account runtime in this process: its gauges, now
        supervisor.observe_metrics()
    engine = getattr(request.app.state, "engine", None)
    if engine is not None:
        metrics.observe_pool(engine.pool)
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
