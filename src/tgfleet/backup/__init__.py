"""Backups of the database (SQLite online copy, PostgreSQL ``pg_dump``) with a manifest of
the keys they need, their verification, and the SQLite restore."""
