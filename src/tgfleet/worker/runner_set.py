"""The account runners of one worker: which run, which are stopping, which are held back.

:class:`~tgfleet.worker.supervisor.Supervisor` decides, in a reconcile pass, what should run;
:class:`RunnerSet` acts on it: it retires the runners that should stop or restart, starts a
batch (its sessions decrypted at once, each start refused unless the worker still validly
holds the account's lease), stops accounts before their leases go to another worker, and
forgets runners that ended. An account in ``quarantined`` or ``error`` stays held back until
its ``restart_seq`` grows (an operator's start/restart) or its secret's version grows (a
re-import).

What it changes makes the supervisor's next pass a full one (``changed``); a runner that
finished stopping makes that pass run at once (``stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account.runtime import DesiredAccount, StateChange
from tgfleet.account.schemas import HELD_STATES
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.models import AccountState, DesiredState, SecretState
from tgfleet.vault import service as vault_service
from tgfleet.vault.service import Decrypted, Vault
from tgfleet.worker.leases import LeaseLoop
from tgfleet.worker.runner import AccountRunner, WorkerContext

log = get_logger(__name__)

#: Seconds a hand-over waits for the stopped clients' states to be written.
STOP_FLUSH_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class Held:
    """What held an account back: its restart counter and secret version at the time."""

    restart_seq: int
    secret_version: int | None


class RunnerSet:
    """The runners of one worker, by account id.

    ``leases`` is the worker's lease loop (PostgreSQL; None for one process): only what it
    validly holds is started. ``changed`` and ``stopped`` are the supervisor's (see the
    module's docstring)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: Vault,
        context: WorkerContext,
        *,
        audit_context: AuditContext,
        shutdown_timeout: float,
        changed: Callable[[], None],
        stopped: Callable[[], None],
    ) -> None:
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._context = context
        self._audit_context = audit_context
        self._shutdown_timeout = shutdown_timeout
        self._changed = changed
        self._stopped = stopped
        self.leases: LeaseLoop | None = None
        self.runners: dict[uuid.UUID, AccountRunner] = {}
        #: Runners being stopped in the background (:meth:`retire`), each ``stop:<id>``.
        self.stopping: set[asyncio.Task[None]] = set()
        #: Accounts a quarantine or error holds back.
        self.held: dict[uuid.UUID, Held] = {}

    def converge(
        self, accounts: list[DesiredAccount], secrets: dict[uuid.UUID, tuple[int, str]]
    ) -> list[DesiredAccount]:
        """Retire the runners that should stop or restart (and those of deleted accounts);
        return the accounts to start."""
        to_start: list[DesiredAccount] = []
        seen: set[uuid.UUID] = set()
        for account in accounts:
            seen.add(account.id)
            secret = secrets.get(account.id)
            runner = self.runners.get(account.id)
            wanted = account.desired_state == DesiredState.RUNNING
            usable = secret is not None and secret[1] == SecretState.ACTIVE
            if runner is not None:
                if not wanted or not usable:
                    self.retire(runner)
                elif account.restart_seq > runner.restart_seq or (
                    secret is not None and secret[0] > runner.secret_version
                ):
                    self.retire(runner)  # the next reconcile starts it afresh
                continue
            if not wanted or self._is_stopping(account.id):
                if wanted:
                    self._changed()  # start it once its old runner has stopped
                continue
            if self._held_back(account, secret[0] if secret else None):
                continue
            to_start.append(account)
        for account_id in [a for a in self.runners if a not in seen]:
            self.retire(self.runners[account_id])  # the account was deleted
        return to_start

    def _held_back(self, account: DesiredAccount, secret_version: int | None) -> bool:
        """Whether a quarantine or error still holds this account (no operator act since)."""
        held = self.held.get(account.id)
        if held is None and account.observed_state in HELD_STATES:
            held = Held(account.observed_restart_seq, account.observed_secret_version)
        if held is None:
            return False
        if account.restart_seq > held.restart_seq:
            return False
        return not (
            secret_version is not None
            and held.secret_version is not None
            and secret_version > held.secret_version
        )

    def reap(self) -> bool:
        """Forget runners that ended (remembering which ended held); whether any did."""
        ended = False
        for account_id, runner in list(self.runners.items()):
            if runner.task is not None and runner.task.done():
                ended = True
                del self.runners[account_id]
                if runner.held:
                    self.held[account_id] = Held(runner.restart_seq, runner.secret_version)
        return ended

    async def stop_accounts(self, account_ids: set[uuid.UUID]) -> None:
        """Stop these accounts' clients and wait (bounded) until they are disconnected:
        before their leases go to another worker (hand-over, self-fencing)."""
        runners = [self.runners[a] for a in account_ids if a in self.runners]
        for runner in runners:
            self.runners.pop(runner.account_id, None)
            runner.request_stop()
        await asyncio.gather(
            *(runner.stop(timeout=self._shutdown_timeout) for runner in runners),
            return_exceptions=True,
        )
        # Their goodbyes reach the database before the leases are free: the next holder's
        # states are never followed by this worker's late ones.
        if runners:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._context.writer.flush(), STOP_FLUSH_TIMEOUT)
        self._changed()

    def _on_stopped(self, task: asyncio.Task[None]) -> None:
        self.stopping.discard(task)
        self._stopped()  # a restart continues at once

    def _is_stopping(self, account_id: uuid.UUID) -> bool:
        return any(t.get_name() == f"stop:{account_id}" for t in self.stopping)

    def retire(self, runner: AccountRunner) -> None:
        """Stop a runner in the background; it leaves ``runners`` at once."""
        self.runners.pop(runner.account_id, None)
        self._changed()
        runner.request_stop()
        task = asyncio.create_task(
            runner.stop(timeout=self._shutdown_timeout), name=f"stop:{runner.account_id}"
        )
        self.stopping.add(task)
        task.add_done_callback(self._on_stopped)

    async def start_many(
        self, accounts: list[DesiredAccount], secrets: dict[uuid.UUID, tuple[int, str]]
    ) -> None:
        """Start ``accounts``: one ``decrypt_many`` (one audit append) for all; an account
        whose session is unusable is held back in ``error``."""
        async with unit_of_work(self._sessionmaker) as session:
            if self.leases is not None and self.leases.registration is not None:
                # Every start carries the lease epoch: refused unless still validly held.
                valid = await lease_service.held(session, self.leases.registration)
                refused = [a for a in accounts if a.id not in valid]
                if refused:
                    log.warning("worker.start_refused_stale_lease", accounts=len(refused))
                    self._changed()
                accounts = [a for a in accounts if a.id in valid]
                if not accounts:
                    return
            opened = await vault_service.decrypt_many(
                session, self._vault, self._audit_context, [a.id for a in accounts], purpose="run"
            )
        for account in accounts:
            if self.leases is not None and account.id not in self.leases.held:
                continue  # handed over while decrypting: never start what is not ours
            result = opened.get(account.id)
            self.held.pop(account.id, None)
            if isinstance(result, Decrypted):
                runner = AccountRunner(account, result.record, result.version, self._context)
                self.runners[account.id] = runner
                runner.start()
                continue
            code = result.code if isinstance(result, AppError) else "session_missing"
            message = result.message if isinstance(result, AppError) else "no session"
            version = secrets.get(account.id, (None, ""))[0]
            self.held[account.id] = Held(account.restart_seq, version)
            if account.observed_state != AccountState.ERROR:
                self._context.writer.state(
                    StateChange(
                        account_id=account.id,
                        state=AccountState.ERROR,
                        previous=account.observed_state,
                        at=utcnow(),
                        worker_id=None,
                        reason="session_unusable",
                        error_code=code,
                        error_message=message,
                        restart_seq=account.restart_seq,
                        secret_version=version,
                    )
                )
            log.warning("worker.session_unusable", account=account.label, error=code)
