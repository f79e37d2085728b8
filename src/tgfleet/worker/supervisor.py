"""The worker supervisor: reconciles every account towards its desired state.

Every ``reconcile_seconds`` it asks two aggregate queries whether any account or secret
changed (an operator's command moves ``account.updated_at`` and ``restart_seq``; a
re-import moves the secret's version); only then, after a runner ended, and every
``full_reconcile_seconds`` anyway, it reads each account's desired state, restart counter
and secret version with the last observed status, and starts, stops or restarts runners
to match (so an API command is acted on within that interval). Starts are batched: one
``decrypt_many`` (one audit append) per reconcile; connects are gated by a semaphore so a
thousand accounts come online without a thundering herd. Group settings and playbooks are
reloaded the same way, when their own fingerprint moves.

An account in ``quarantined`` or ``error`` stays there until its ``restart_seq`` grows (an
operator's start/restart) or its secret's version grows (a re-import). On shutdown every
runner disconnects concurrently, bounded by ``shutdown_timeout`` (6 s; `tgfleet run` gives
HTTP requests 3 s before that, so every client is gone within 10 s of SIGTERM).

The supervisor wires the worker together and decides; its parts act:
:class:`~tgfleet.worker.runner_set.RunnerSet` (the runners: start, retire, hand over, held
back), :class:`~tgfleet.worker.fleet_view.FleetView` (group settings, playbooks and the
fleet's user ids the runners read), :class:`~tgfleet.worker.leases.LeaseLoop` (PostgreSQL),
:mod:`~tgfleet.worker.local_replies` (one process) and
:class:`~tgfleet.worker.heap.HeapFreeze`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import runtime
from tgfleet.account.runtime import DesiredAccount
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import Lifecycle
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.models import AccountState
from tgfleet.playbook.engine import LlmConfig, ReplyEngine
from tgfleet.playbook.gate import LocalGate, SavedClaim, SavedReplies
from tgfleet.vault import service as vault_service
from tgfleet.vault.formats import CanonicalSession
from tgfleet.vault.service import Vault
from tgfleet.worker import local_replies
from tgfleet.worker.fleet_view import FleetView
from tgfleet.worker.heap import HeapFreeze
from tgfleet.worker.leases import LeaseConfig, LeaseLoop
from tgfleet.worker.listener import CommandListener
from tgfleet.worker.reply_gate import FleetGate
from tgfleet.worker.retry import TokenBucket
from tgfleet.worker.runner import ClientFactory, WorkerContext
from tgfleet.worker.runner_set import RunnerSet
from tgfleet.worker.status import StatusWriter
from tgfleet.worker.telegram import ClientOptions, build_client

log = get_logger(__name__)

DEMO_API_ID = 1
DEMO_API_HASH = "sandbox-demo"


def default_worker_id() -> str:
    """The host name: stable across restarts, so a restarted worker releases the states
    its previous run left (in Kubernetes each pod has its own name)."""
    return socket.gethostname()


class Supervisor(Lifecycle):
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: Vault,
        *,
        worker_id: str | None = None,
        client_factory: ClientFactory = build_client,
        full_reconcile_seconds: float = 10.0,
        shutdown_timeout: float = 6.0,
    ) -> None:
        self.worker_id = worker_id or settings.worker_id or default_worker_id()
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._full_interval = full_reconcile_seconds
        self._shutdown_timeout = shutdown_timeout
        leased = settings.effective_database_url.startswith("postgresql")
        self.writer = StatusWriter(
            sessionmaker,
            interval=settings.worker_status_flush_seconds,
            lease_holder=self.worker_id if leased else None,
        )
        api_id, api_hash = _app_credentials(settings)
        fleet_ids: set[int] = set()
        self.gate: FleetGate | None = None
        # One process: its decisions in memory, saved every second to survive a restart.
        self.local_gate: LocalGate | None = None if leased else LocalGate()
        if leased:
            # Several workers may serve this fleet: every reply decision is PostgreSQL's,
            # on connections of the gate's own (one round trip each).
            self.gate = FleetGate(
                settings.effective_database_url,
                fleet_ids,
                worker_id=self.worker_id,
                listening=lambda: self.listener is not None and self.listener.connected,
            )
        self.context = WorkerContext(
            worker_id=self.worker_id,
            writer=self.writer,
            engine=ReplyEngine(
                LlmConfig.from_settings(settings), gate=self.gate or self.local_gate
            ),
            budget=TokenBucket(
                settings.worker_retry_budget, settings.worker_retry_refill_per_second
            ),
            options=ClientOptions(
                api_id=api_id,
                api_hash=api_hash,
                connect_timeout=settings.worker_connect_timeout_seconds,
            ),
            client_factory=client_factory,
            write_back=self._write_back,
            connect_timeout=settings.worker_connect_timeout_seconds,
            request_timeout=settings.worker_request_timeout_seconds,
            handler_timeout=settings.worker_handler_timeout_seconds,
            retry_cap=settings.worker_max_retry_seconds,
            max_attempts=settings.worker_max_reconnect_attempts,
            start_gate=asyncio.Semaphore(settings.worker_start_concurrency),
            fleet_ids=fleet_ids,
            learn_identity=self._learn_identity,
            keep_reply_text=settings.reply_text_retention_days > 0,
        )
        self._fleet_view = FleetView(
            sessionmaker,
            self.context,
            listening=lambda: self.listener is not None and self.listener.connected,
            full_interval=full_reconcile_seconds,
        )
        self._runner_set = RunnerSet(
            sessionmaker,
            vault,
            self.context,
            audit_context=self.audit_context,
            shutdown_timeout=shutdown_timeout,
            changed=self._changed,
            stopped=self._runner_stopped,
        )
        # The runner set's own dict and set: stop() reads them here.
        self.runners = self._runner_set.runners
        self._stopping = self._runner_set.stopping
        self.leases: LeaseLoop | None = None
        self.listener: CommandListener | None = None
        if leased:
            channels = {} if self.gate is None else {lease_service.REPLY_CHANNEL: self.gate.heard}
            self.listener = CommandListener(
                settings.effective_database_url, self._command, channels
            )
            self.leases = LeaseLoop(
                sessionmaker,
                self.worker_id,
                LeaseConfig(
                    ttl=settings.lease_ttl_seconds,
                    grace=settings.lease_grace_seconds,
                    capacity=settings.worker_capacity,
                    release_step=settings.lease_release_step,
                ),
                on_change=self.wake,
                stop_accounts=self._runner_set.stop_accounts,
            )
            self.context.lease_fresh = self.leases.fresh
            self._runner_set.leases = self.leases
        self._fingerprint: tuple[object, ...] = ()
        self._full_at = 0.0
        self._heap = HeapFreeze()
        self._dirty = True
        self.full_reconciles = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciles = 0
        self.ready = asyncio.Event()

    @property
    def heap_settled(self) -> bool:
        """No heap freeze is due: the one after the last client starts has run (it holds
        the event loop for a full collection; `tgfleet.worker.heap`)."""
        return not self._heap.pending

    @property
    def audit_context(self) -> AuditContext:
        return AuditContext(actor=f"worker:{self.worker_id}")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Clear what a previous run of this worker left, register for leases (PostgreSQL),
        then reconcile in the background."""
        async with unit_of_work(self._sessionmaker) as session:
            stale = await runtime.release_stale(session, self.worker_id)
            await self._load_fleet_ids(session)  # before any client can see a message
            if self.local_gate is not None:
                windows, claims = await lease_service.load_saved_replies(session)
                self.local_gate.restore(
                    SavedReplies(
                        windows,
                        [
                            SavedClaim(key, account, chat, at)
                            for key, account, chat, at, _ in claims
                        ],
                        [],
                    )
                )
        if stale:
            log.info("worker.released_stale", accounts=stale, worker_id=self.worker_id)
        self._tasks = [asyncio.create_task(self.writer.run(), name="worker:status")]
        if self.local_gate is not None:
            self._tasks.append(
                asyncio.create_task(self._save_replies_loop(), name="worker:replies")
            )
        if self.leases is not None:
            await self.leases.register()
            await self.leases.tick()  # claim a first share before the first reconcile
            self._tasks.append(asyncio.create_task(self.leases.run(), name="worker:leases"))
        if self.listener is not None:
            self._tasks.append(asyncio.create_task(self.listener.run(), name="worker:listener"))
        self._tasks.append(asyncio.create_task(self._reconcile_loop(), name="worker:reconcile"))
        log.info("worker.started", worker_id=self.worker_id, leases=self.leases is not None)

    def wake(self) -> None:
        """Reconcile fully now (a command was notified, or committed in this process)."""
        self._dirty = True
        self._fleet_view.groups_dirty = True
        self._wake.set()

    def _command(self, kind: str) -> None:
        """A notification: leases freed elsewhere (claim them), or an operator's command
        (reconcile, and let the lease loop claim what it made claimable)."""
        metrics.COMMANDS.labels("notify").inc()
        if kind == notify.FLEET_CHANGED:
            self._fleet_view.fleet_dirty = True  # an account learned its identity: know it here
            self._wake.set()
            return
        if kind == notify.LEASES_FREED:
            if self.leases is not None:
                self.leases.poke(command=False)
            return
        self.wake()
        if self.leases is not None:
            self.leases.poke()

    async def stop(self) -> None:
        """Disconnect every client (concurrently, within the shutdown timeout) and flush."""
        started = time.monotonic()
        reconcile = [
            t
            for t in self._tasks
            if t.get_name() in {"worker:reconcile", "worker:leases", "worker:listener"}
        ]
        for task in reconcile:
            task.cancel()
        await asyncio.gather(*reconcile, return_exceptions=True)
        runners = list(self.runners.values())
        for runner in runners:
            runner.request_stop()
        budget = max(0.5, self._shutdown_timeout - 1.0)
        await asyncio.gather(
            *(runner.stop(timeout=budget) for runner in runners), return_exceptions=True
        )
        if self._stopping:
            await asyncio.wait(self._stopping, timeout=1.0)
        self.runners.clear()
        if self.leases is not None:
            await self.leases.drain()  # clients are down: hand every account over at once
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.flush(), 2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._save_replies(), 2.0)
        await self.context.engine.aclose()
        if self.gate is not None:
            await self.gate.aclose()
        log.info(
            "worker.stopped",
            accounts=len(runners),
            seconds=round(time.monotonic() - started, 3),
        )

    # ------------------------------------------------------------------ reconcile

    async def _reconcile_loop(self) -> None:
        interval = self._settings.worker_reconcile_seconds
        while True:
            # Cleared before the pass: a wake-up that arrives during it runs another pass.
            self._wake.clear()
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again next tick
                log.warning("worker.reconcile_failed", error=type(exc).__name__)
                self._dirty = True
            self.ready.set()
            self._heap.maybe_freeze()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def reconcile(self) -> None:
        """One pass. Cheap when nothing changed: two aggregate queries tell whether the
        accounts or secrets moved; everything is reloaded only then, after a runner ended
        or was retired, on :meth:`wake`, and every ``full_reconcile_seconds`` anyway."""
        self.reconciles += 1
        ended = self._runner_set.reap()
        now = time.monotonic()
        listening = self.listener is not None and self.listener.connected
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            full = ended or self._dirty or now - self._full_at > self._full_interval
            if not full and not listening:  # polling: commands arrive by notification else
                fingerprint = (
                    await runtime.desired_fingerprint(session),
                    await vault_service.secrets_fingerprint(session),
                )
                full = fingerprint != self._fingerprint
                if full and self._fingerprint:
                    metrics.COMMANDS.labels("poll").inc()
                self._fingerprint = fingerprint
                if full and self.leases is not None:
                    self.leases.poke()  # a started account may be waiting to be claimed
            if full:
                self._dirty = False
                self._full_at = now
                # The held set as of now: a lease change after this line sets _dirty again.
                only = sorted(self.leases.held) if self.leases is not None else None
                accounts = await runtime.load_desired(session, only)
                secrets = await vault_service.secret_versions(session, only)
            groups_moved = await self._fleet_view.groups_moved(session)
            if self._fleet_view.fleet_dirty or not listening:
                await self._fleet_view.load_fleet_ids(
                    session, check=not self._fleet_view.fleet_dirty
                )
        if full:
            self.full_reconciles += 1
            started = time.perf_counter()
            await self._converge(accounts, secrets)
            metrics.RECONCILE_DURATION.labels("full").observe(time.perf_counter() - started)
        if groups_moved:
            await self._fleet_view.refresh_groups(list(self.runners))

    async def _converge(
        self, accounts: list[DesiredAccount], secrets: dict[uuid.UUID, tuple[int, str]]
    ) -> None:
        self.context.fleet_ids.update(a.tg_user_id for a in accounts if a.tg_user_id)
        if self.leases is not None:  # only what this worker validly holds
            held = self.leases.held
            accounts = [a for a in accounts if a.id in held]
        to_start = self._runner_set.converge(accounts, secrets)
        if to_start:
            await self._runner_set.start_many(to_start, secrets)
            self._fleet_view.groups_dirty = True
            self._heap.schedule()

    def _changed(self) -> None:
        """Something the runner set did needs a full pass (at the next tick)."""
        self._dirty = True

    def _runner_stopped(self) -> None:
        """A retired runner stopped: a restart continues at once."""
        self._dirty = True
        self._wake.set()

    async def _load_fleet_ids(self, session: AsyncSession) -> None:
        await self._fleet_view.load_fleet_ids(session)

    async def _save_replies_loop(self) -> None:
        if self.local_gate is not None:
            await local_replies.save_replies_forever(self._sessionmaker, self.local_gate)

    async def _save_replies(self) -> None:
        """One process: write what the reply gate decided since the last save."""
        if self.local_gate is not None:
            await local_replies.save_replies(self._sessionmaker, self.local_gate)

    async def _learn_identity(
        self, account_id: uuid.UUID, tg_user_id: int, username: str | None
    ) -> None:
        async with unit_of_work(self._sessionmaker) as session:
            await runtime.learn_identity(session, account_id, tg_user_id, username)

    # ------------------------------------------------------------------ vault

    async def _write_back(
        self, account_id: uuid.UUID, record: CanonicalSession, version: int
    ) -> int | None:
        async with unit_of_work(self._sessionmaker) as session:
            return await vault_service.update_session(
                session,
                self._vault,
                self.audit_context,
                account_id,
                record,
                expected_version=version,
                reason="client session changed (DC or auth key)",
            )

    # ------------------------------------------------------------------ views

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for runner in self.runners.values():
            counts[runner.state] = counts.get(runner.state, 0) + 1
        return counts

    def observe_metrics(self) -> None:
        """Set this worker's gauges from what it holds now (called at scrape time, so no
        gauge can drift from the truth)."""
        counts = self.states()
        counts[AccountState.ERROR] = counts.get(AccountState.ERROR, 0) + sum(
            1 for account_id in self._runner_set.held if account_id not in self.runners
        )
        for state in AccountState:
            metrics.WORKER_ACCOUNTS.labels(state).set(counts.get(state, 0))
        metrics.ACCOUNTS_FLOOD_WAITING.set(counts.get(AccountState.FLOOD_WAIT, 0))
        metrics.RETRY_BUDGET_TOKENS.set(self.context.budget.available)
        metrics.STATUS_PENDING.set(self.writer.pending)
        if metrics.per_account_enabled():
            metrics.ACCOUNT_UP.clear()
            for runner in self.runners.values():
                metrics.ACCOUNT_UP.labels(runner.label).set(
                    1 if runner.state == AccountState.ONLINE else 0
                )
        if self.leases is not None:
            self.leases.observe_metrics()


def _app_credentials(settings: Settings) -> tuple[int, str]:
    """The Telegram app the clients present; settings validation ensures both or neither."""
    if settings.telegram_api_id is not None and settings.telegram_api_hash is not None:
        return settings.telegram_api_id, settings.telegram_api_hash.get_secret_value()
    return DEMO_API_ID, DEMO_API_HASH
