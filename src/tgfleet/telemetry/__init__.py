"""Telemetry: the /metrics endpoint, the fleet-wide gauges read from the database, and the
event-loop lag sampler. Metric definitions live in :mod:`tgfleet.metrics`."""
