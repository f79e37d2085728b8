"""Freezing the heap once started clients have settled (:class:`HeapFreeze`).

A thousand Telethon clients make a heap of millions of long-lived objects; a full
collection walks all of them and held the event loop for 0.4-0.6 s every few seconds under
load (the reply latency tail, bench/fleet.py). Objects moved into the garbage collector's
permanent generation are not walked; what the clients allocate from then on is collected as
usual.
"""

from __future__ import annotations

import gc
import time
from typing import Final

from tgfleet.logging import get_logger

log = get_logger(__name__)

#: Seconds after the last start before the heap is frozen.
FREEZE_DELAY: Final = 5.0


class HeapFreeze:
    """Freezes the heap :data:`FREEZE_DELAY` seconds after the last :meth:`schedule`."""

    def __init__(self) -> None:
        self._at: float | None = None

    def schedule(self) -> None:
        """Clients were started: freeze once they have settled (the delay restarts)."""
        self._at = time.monotonic() + FREEZE_DELAY

    @property
    def pending(self) -> bool:
        """A freeze is scheduled and has not run yet."""
        return self._at is not None

    def maybe_freeze(self) -> None:
        """Freeze if one is due. Each freeze first unfreezes, so the clients of runners
        stopped meanwhile are collected then."""
        if self._at is None or time.monotonic() < self._at:
            return
        self._at = None
        started = time.monotonic()
        gc.unfreeze()  # clients stopped since the last freeze become collectable again
        gc.collect()
        gc.freeze()
        log.info(
            "worker.gc_frozen",
            objects=gc.get_freeze_count(),
            seconds=round(time.monotonic() - started, 3),
        )
