"""`Lifecycle`: the base of every long-lived component (a background task, a server, the
account runtime), so that ``async with component:`` starts it and always stops it.

A component writes its ``start()`` (plain or async: creating a task needs no await) and its
``async stop()`` once; this base maps ``__aenter__``/``__aexit__`` onto them, so a process
assembles its components on one ``contextlib.AsyncExitStack`` and they stop in the reverse
order they started, including when a later one fails to start (``tgfleet.process``).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


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
