"""What every account runner of one worker shares: the :class:`WorkerContext`.

The supervisor builds one per worker process and keeps it current (group settings,
playbooks, the fleet's Telegram ids, whether the lease is fresh); every
:class:`~tgfleet.worker.runner.AccountRunner` reads it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telethon import TelegramClient

from tgfleet.account.runtime import GroupSetting
from tgfleet.playbook.engine import CompiledPlaybook, ReplyEngine
from tgfleet.vault.formats import CanonicalSession
from tgfleet.worker.retry import TokenBucket
from tgfleet.worker.status import StatusWriter
from tgfleet.worker.telegram import ClientOptions

ClientFactory = Callable[[CanonicalSession, ClientOptions], TelegramClient]
WriteBack = Callable[[uuid.UUID, CanonicalSession, int], Awaitable[int | None]]
LearnIdentity = Callable[[uuid.UUID, int, str | None], Awaitable[None]]


async def _remember_nothing(_account_id: uuid.UUID, _user_id: int, _username: str | None) -> None:
    return None


@dataclass(slots=True)
class WorkerContext:
    """What every runner of one worker shares."""

    worker_id: str
    writer: StatusWriter
    engine: ReplyEngine
    budget: TokenBucket
    options: ClientOptions
    client_factory: ClientFactory
    write_back: WriteBack
    connect_timeout: float = 15.0
    request_timeout: float = 20.0
    handler_timeout: float = 60.0
    retry_base: float = 1.0
    retry_cap: float = 60.0
    max_attempts: int = 1000
    start_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(50))
    groups: dict[uuid.UUID, dict[int, GroupSetting]] = field(default_factory=dict)
    playbooks: dict[tuple[uuid.UUID, int], CompiledPlaybook] = field(default_factory=dict)
    latest: dict[uuid.UUID, int] = field(default_factory=dict)
    #: False while this worker's lease is not known fresh (not renewed for TTL/2, e.g. after
    #: the process was frozen): then nothing is sent and nothing connects (self-fencing).
    lease_fresh: Callable[[], bool] = lambda: True
    #: Telegram user ids of every account of the fleet (on every worker, not only this
    #: one's): their messages never trigger replies, so no two accounts answer each other.
    fleet_ids: set[int] = field(default_factory=set)
    #: Stores an identity learned at connect (and tells every worker) before the account
    #: goes online; a failure is a transient connect error.
    learn_identity: LearnIdentity = _remember_nothing
    #: Whether a sent reply's text is stored on its timeline event
    #: (``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` > 0).
    keep_reply_text: bool = True

    def playbook_for(self, setting: GroupSetting) -> CompiledPlaybook | None:
        if setting.playbook_id is None:
            return None
        version = setting.playbook_version or self.latest.get(setting.playbook_id)
        if version is None:
            return None
        return self.playbooks.get((setting.playbook_id, version))
