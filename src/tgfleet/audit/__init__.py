"""Audit: the hash-chained, append-only record of every change and every sensitive read."""
