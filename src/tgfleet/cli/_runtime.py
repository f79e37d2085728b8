"""What every CLI command shares: settings, logging, one unit of work, clean errors.

A command is a thin sync shim: ``run_async(fn)`` opens the engine, gives ``fn`` a session
inside one unit of work (commit on success, roll back on error) and turns an ``AppError``
into its message on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings, ensure_data_dir
from tgfleet.exceptions import AppError
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.logging import configure_logging

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] invalid settings: {exc}")
        raise typer.Exit(2) from exc
    configure_logging(level="WARNING", json=settings.effective_log_json)
    return settings


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def cli_audit_context() -> AuditContext:
    return AuditContext(actor=f"cli:{os_user()}", ip=None, request_id=None)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one unit of work against the configured database."""

    async def main() -> T:
        ensure_data_dir(settings)
        engine = create_engine(
            settings.effective_database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AppError as exc:
        raise fail(exc.message) from exc
