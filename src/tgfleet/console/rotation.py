"""The vault rotation a console process runs for the vault page, and its progress.

``rotate()`` re-wraps in batches and reports ``progress(done, total)`` after each; the
runner keeps the latest figures and wakes every page watching them (the page's SSE stream,
``routes/vault.py``). One rotation at a time per process: a second click while one runs
starts nothing (the page shows the running one). Across processes the domain refuses a
second run itself (``RotationInProgress``). The task is owned by the runner and cancelled
when the app stops (a cancelled rotation continues at the next run: its batches commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.lifecycle import cancel_and_wait
from tgfleet.logging import get_logger
from tgfleet.vault import service as vault_service

log = get_logger(__name__)

RUNNING: Final = "running"
DONE: Final = "done"
FAILED: Final = "failed"
_STATE_KEY = "console_rotation"


@dataclass(frozen=True, slots=True)
class RotationProgress:
    """Where this process's rotation is: figures, and its result once it ends."""

    state: str
    actor: str
    started_at: datetime
    done: int = 0
    #: None until the run knows how many data keys it re-wraps.
    total: int | None = None
    report: vault_service.RotationReport | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        if not self.total:
            return 0
        return min(100, self.done * 100 // self.total)


class RotationRunner:
    def __init__(self) -> None:
        self.progress: RotationProgress | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        context: AuditContext,
    ) -> bool:
        """Start a rotation unless this process runs one; False when it does."""
        if self.running:
            return False
        self._set(RotationProgress(state=RUNNING, actor=context.actor, started_at=utcnow()))
        self._task = asyncio.create_task(
            self._run(sessionmaker, vault, context), name="console:vault-rotation"
        )
        return True

    async def _run(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        context: AuditContext,
    ) -> None:
        try:
            report = await vault_service.rotate(
                sessionmaker, vault, context, progress=self._advance
            )
        except AppError as exc:
            self._end(FAILED, error=exc.message)
        except Exception:
            log.exception("console.rotation_failed")
            self._end(FAILED, error="the rotation failed; the server's log has the error")
        else:
            done = report.rewrapped + report.failed
            self._end(DONE, report=report, done=done)

    def _advance(self, done: int, total: int) -> None:
        if self.progress is not None:
            self._set(replace(self.progress, done=done, total=total))

    def _end(
        self,
        state: str,
        *,
        report: vault_service.RotationReport | None = None,
        error: str | None = None,
        done: int | None = None,
    ) -> None:
        if self.progress is None:
            return
        ended = replace(self.progress, state=state, report=report, error=error)
        if done is not None:
            ended = replace(ended, done=done, total=max(done, ended.total or 0))
        self._set(ended)

    def _set(self, progress: RotationProgress) -> None:
        self.progress = progress
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def updates(self) -> AsyncIterator[RotationProgress | None]:
        """The progress now, then each change, until the rotation has ended."""
        while True:
            changed = self._changed
            current = self.progress
            yield current
            if current is None or current.finished:
                return
            await changed.wait()

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)


def runner_of(app: FastAPI) -> RotationRunner:
    """The process's runner (made at first use)."""
    runner: RotationRunner | None = getattr(app.state, _STATE_KEY, None)
    if runner is None:
        runner = RotationRunner()
        setattr(app.state, _STATE_KEY, runner)
    return runner


async def close(app: FastAPI) -> None:
    """Cancel a rotation still running when the app stops."""
    runner: RotationRunner | None = getattr(app.state, _STATE_KEY, None)
    if runner is not None:
        await runner.close()
