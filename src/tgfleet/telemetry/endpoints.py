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
from tgfleet.components import AppComponents
from tgfleet.exceptions import Unauthorized

router = APIRouter(tags=["telemetry"])


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(request: Request, components: AppComponents) -> Response:
    """Every tgfleet metric of this process (and, on the API, the fleet-wide gauges read
    from the database, cached a few seconds)."""
    token = components.settings.metrics_token
    if token is not None:
        sent = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized(
                "a metrics scrape needs Authorization: Bearer <TGFLEET_METRICS_TOKEN>"
            )
    if components.fleet_gauges is not None:
        await components.fleet_gauges.refresh()
    if components.observe_runtime is not None:  # the account runtime in this process: now
        components.observe_runtime()
    metrics.observe_pool(components.engine.pool)
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)
