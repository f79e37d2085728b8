"""The checks :class:`~tgfleet.health.service.HealthService` runs, one module per thing probed.

Each check is an async function returning one or more
:class:`~tgfleet.health.schemas.CheckResult` (one per component, e.g. per Telegram DC), written
in our own words: what it needs is passed in, it knows nothing of HTTP, caching or time limits
(the service runs every check within its limit and turns an exception into a failed result).
:mod:`~tgfleet.health.checks.result` builds the results.
"""
