"""Health: liveness and readiness probes (the full /health document comes with metrics)."""
