"""Health: liveness, readiness, the application/health+json document, and the Telegram
network monitor (docs/health.md)."""
