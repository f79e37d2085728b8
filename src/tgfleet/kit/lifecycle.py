"""`Lifecycle`: the base of every long-lived component (a background task, a server, the
account runtime), so that ``async with component:`` starts it and always stops it.

A component writes its ``start()`` (plain or async: creating a task needs no await) and its
``async stop()`` once; this base maps ``__aenter__``/``__aexit__`` onto them, so a process
assembles its components on one ``contextlib.AsyncExitStack`` and they stop in the reverse
order they started, including when a later one fails to start (``tgfleet.process``).

`TaskLifecycle` is the common case written once: a component whose work is one background
task (a periodic loop), started once and cancelled on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, ClassVar, Self


class Lifecycle(ABC):
    """``async with`` runs ``start()`` on entry and ``stop()`` on exit (after an error too)."""

    @abstractmethod
    def start(self) -> object:
        """Start the component; may be a coroutine function (its result is awaited)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the component and wait for what it started."""

    async def __aenter__(self) -> Self:
        started = self.start()
        if inspect.isawaitable(started):
            await started
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (when there is one) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TaskLifecycle(Lifecycle):
    """A component whose work is one task running ``_run()``, named ``task_name``:
    ``start()`` creates it (once), ``stop()`` cancels it and waits for it to end."""

    task_name: ClassVar[str]
    _task: asyncio.Task[None] | None = None

    @abstractmethod
    async def _run(self) -> None:
        """The component's work, until cancelled."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.task_name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
