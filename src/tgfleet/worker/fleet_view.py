"""What a worker knows of the fleet beyond its own accounts, kept current.

Every runner reads, from the :class:`~tgfleet.worker.runner.WorkerContext`, the settings of
its groups, the compiled playbooks they use (and each playbook's latest version), and the
Telegram user ids of every account of the fleet (their messages are never answered).
:class:`FleetView` reloads them, during a reconcile pass, only when they moved: with a
command listener a notification says so (``fleet_dirty``, ``groups_dirty``); without one
their fingerprints are compared; and group settings every ``full_interval`` anyway.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import runtime
from tgfleet.kit.db import unit_of_work
from tgfleet.playbook import service as playbook_service
from tgfleet.worker.runner import WorkerContext


class FleetView:
    """Reloads ``context``'s group settings, playbooks and fleet ids when they moved.

    ``listening`` tells whether the command listener is connected (changes then arrive by
    notification, and no fingerprint is read)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        context: WorkerContext,
        *,
        listening: Callable[[], bool],
        full_interval: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._context = context
        self._listening = listening
        self._full_interval = full_interval
        #: The fleet's user ids must be reloaded (an account learned its identity).
        self.fleet_dirty = True
        self._fleet_fingerprint: tuple[object, ...] = ()
        #: Group settings and playbooks must be reloaded (a command, or new runners).
        self.groups_dirty = True
        self._groups_loaded_at = 0.0
        self._groups_fingerprint: tuple[object, ...] = ()

    async def groups_moved(self, session: AsyncSession) -> bool:
        """Whether :meth:`refresh_groups` is due."""
        stale = time.monotonic() - self._groups_loaded_at > self._full_interval
        if self._listening():
            return self.groups_dirty or stale  # changes arrive by notification
        fingerprint = (
            await runtime.groups_fingerprint(session),
            await playbook_service.fingerprint(session),
        )
        moved = (
            self.groups_dirty
            or fingerprint != self._groups_fingerprint
            or time.monotonic() - self._groups_loaded_at > self._full_interval
        )
        self._groups_fingerprint = fingerprint
        return moved

    async def load_fleet_ids(self, session: AsyncSession, *, check: bool = False) -> None:
        """Know every account of the fleet by its Telegram user id, not only this worker's
        (their messages are never answered). ``check``: reload only if the stored ids moved
        (polling; with a listener, a notification says so). Ids are only added: an id of a
        deleted account left in the set only means that user is never answered."""
        if check:
            fingerprint = await runtime.fleet_ids_fingerprint(session)
            if fingerprint == self._fleet_fingerprint:
                return
            self._fleet_fingerprint = fingerprint
        self.fleet_dirty = False
        self._context.fleet_ids.update(await runtime.fleet_user_ids(session))

    async def refresh_groups(self, account_ids: Collection[uuid.UUID]) -> None:
        """Load the group settings of ``account_ids`` and compile the playbooks they use
        that are not compiled yet."""
        self.groups_dirty = False
        self._groups_loaded_at = time.monotonic()
        context = self._context
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            groups = await runtime.load_groups(session, account_ids)
            playbook_ids = {
                g.playbook_id
                for settings in groups.values()
                for g in settings.values()
                if g.playbook_id is not None and g.enabled
            }
            latest = await playbook_service.latest_versions(session, playbook_ids)
            wanted = {
                (g.playbook_id, g.playbook_version or latest.get(g.playbook_id, 0))
                for settings in groups.values()
                for g in settings.values()
                if g.playbook_id is not None and g.enabled
            }
            missing = {ref for ref in wanted if ref not in context.playbooks and ref[1]}
            compiled = await playbook_service.load_compiled(session, missing) if missing else {}
        context.playbooks.update(compiled)
        context.latest.clear()
        context.latest.update(latest)
        context.groups.clear()
        context.groups.update(groups)
