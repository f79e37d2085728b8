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
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import runtime
from tgfleet.account.runtime import (
    HELD_STATES,
    STATES,
    DesiredAccount,
    State,
    StateChange,
)
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.playbook import service as playbook_service
from tgfleet.playbook.engine import LlmConfig, ReplyEngine
from tgfleet.playbook.gate import CLAIM_TTL_SECONDS, LocalGate, SavedClaim, SavedReplies
from tgfleet.vault import service as vault_service
from tgfleet.vault.formats import CanonicalSession
from tgfleet.vault.service import Decrypted, Vault
from tgfleet.worker.leases import LeaseConfig, LeaseLoop
from tgfleet.worker.listener import CommandListener
from tgfleet.worker.reply_gate import FleetGate
from tgfleet.worker.retry import TokenBucket
from tgfleet.worker.runner import AccountRunner, ClientFactory, WorkerContext
from tgfleet.worker.status import StatusWriter
from tgfleet.worker.telegram import ClientOptions, build_client

log = get_logger(__name__)

RUNNING = "running"
ACTIVE_SECRET = "active"  # noqa: S105 - a state name, not a secret
DEMO_API_ID = 1
DEMO_API_HASH = "sandbox-demo"
#: Seconds after the last start before the heap is frozen (see ``_maybe_freeze``).
FREEZE_DELAY = 5.0
#: Seconds a hand-over waits for the stopped clients' states to be written.
STOP_FLUSH_TIMEOUT = 2.0
#: One process (SQLite): how often the reply gate's decisions are saved.
REPLY_SAVE_SECONDS = 1.0


def default_worker_id() -> str:
    """The host name: stable across restarts, so a restarted worker releases the states
    its previous run left (in Kubernetes each pod has its own name)."""
    return socket.gethostname()


@dataclass(frozen=True, slots=True)
class _Held:
    restart_seq: int
    secret_version: int | None


class Supervisor:
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
        )
        self._fleet_dirty = True
        self._fleet_fingerprint: tuple[object, ...] = ()
        self.runners: dict[uuid.UUID, AccountRunner] = {}
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
                stop_accounts=self._stop_accounts,
            )
            self.context.lease_fresh = self.leases.fresh
        self._held: dict[uuid.UUID, _Held] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._groups_loaded_at = 0.0
        self._groups_dirty = True
        self._groups_fingerprint: tuple[object, ...] = ()
        self._fingerprint: tuple[object, ...] = ()
        self._full_at = 0.0
        self._freeze_at: float | None = None
        self._dirty = True
        self.full_reconciles = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.reconciles = 0
        self.ready = asyncio.Event()

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
        self._groups_dirty = True
        self._wake.set()

    def _command(self, kind: str) -> None:
        """A notification: leases freed elsewhere (claim them), or an operator's command
        (reconcile, and let the lease loop claim what it made claimable)."""
        metrics.COMMANDS.labels("notify").inc()
        if kind == notify.FLEET_CHANGED:
            self._fleet_dirty = True  # an account learned its identity: know it here too
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
            self._maybe_freeze()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)

    async def reconcile(self) -> None:
        """One pass. Cheap when nothing changed: two aggregate queries tell whether the
        accounts or secrets moved; everything is reloaded only then, after a runner ended
        or was retired, on :meth:`wake`, and every ``full_reconcile_seconds`` anyway."""
        self.reconciles += 1
        ended = self._reap()
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
            groups_moved = await self._groups_moved(session)
            if self._fleet_dirty or not listening:
                await self._load_fleet_ids(session, check=not self._fleet_dirty)
        if full:
            self.full_reconciles += 1
            started = time.perf_counter()
            await self._converge(accounts, secrets)
            metrics.RECONCILE_DURATION.labels("full").observe(time.perf_counter() - started)
        if groups_moved:
            await self._refresh_groups()

    async def _converge(
        self, accounts: list[DesiredAccount], secrets: dict[uuid.UUID, tuple[int, str]]
    ) -> None:
        self.context.fleet_ids.update(a.tg_user_id for a in accounts if a.tg_user_id)
        if self.leases is not None:  # only what this worker validly holds
            held = self.leases.held
            accounts = [a for a in accounts if a.id in held]
        to_start: list[DesiredAccount] = []
        seen: set[uuid.UUID] = set()
        for account in accounts:
            seen.add(account.id)
            secret = secrets.get(account.id)
            runner = self.runners.get(account.id)
            wanted = account.desired_state == RUNNING
            usable = secret is not None and secret[1] == ACTIVE_SECRET
            if runner is not None:
                if not wanted or not usable:
                    self._retire(runner)
                elif account.restart_seq > runner.restart_seq or (
                    secret is not None and secret[0] > runner.secret_version
                ):
                    self._retire(runner)  # the next reconcile starts it afresh
                continue
            if not wanted or self._is_stopping(account.id):
                if wanted:
                    self._dirty = True  # start it once its old runner has stopped
                continue
            if self._held_back(account, secret[0] if secret else None):
                continue
            to_start.append(account)
        for account_id in [a for a in self.runners if a not in seen]:
            self._retire(self.runners[account_id])  # the account was deleted
        if to_start:
            await self._start_many(to_start, secrets)
            self._groups_dirty = True
            self._freeze_at = time.monotonic() + FREEZE_DELAY

    async def _groups_moved(self, session: AsyncSession) -> bool:
        stale = time.monotonic() - self._groups_loaded_at > self._full_interval
        if self.listener is not None and self.listener.connected:
            return self._groups_dirty or stale  # changes arrive by notification
        fingerprint = (
            await runtime.groups_fingerprint(session),
            await playbook_service.fingerprint(session),
        )
        moved = (
            self._groups_dirty
            or fingerprint != self._groups_fingerprint
            or time.monotonic() - self._groups_loaded_at > self._full_interval
        )
        self._groups_fingerprint = fingerprint
        return moved

    async def _load_fleet_ids(self, session: AsyncSession, *, check: bool = False) -> None:
        """Know every account of the fleet by its Telegram user id, not only this worker's
        (their messages are never answered). ``check``: reload only if the stored ids moved
        (polling; with a listener, a notification says so). Ids are only added: an id of a
        deleted account left in the set only means that user is never answered."""
        if check:
            fingerprint = await runtime.fleet_ids_fingerprint(session)
            if fingerprint == self._fleet_fingerprint:
                return
            self._fleet_fingerprint = fingerprint
        self._fleet_dirty = False
        self.context.fleet_ids.update(await runtime.fleet_user_ids(session))

    async def _save_replies_loop(self) -> None:
        while True:
            await asyncio.sleep(REPLY_SAVE_SECONDS)
            try:
                await self._save_replies()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: kept for the next round
                log.warning("worker.replies_not_saved", error=type(exc).__name__)

    async def _save_replies(self) -> None:
        """One process: write what the reply gate decided since the last save."""
        if self.local_gate is None:
            return
        changes = self.local_gate.changes()
        if not changes:
            return
        try:
            async with unit_of_work(self._sessionmaker) as session:
                await lease_service.save_replies(
                    session,
                    changes.windows,
                    [
                        (
                            c.key,
                            c.account_id,
                            c.chat_id,
                            c.claimed_at,
                            c.claimed_at + CLAIM_TTL_SECONDS,
                        )
                        for c in changes.claims
                    ],
                    changes.gone,
                )
        except BaseException:
            self.local_gate.unsaved(changes)
            raise

    async def _learn_identity(
        self, account_id: uuid.UUID, tg_user_id: int, username: str | None
    ) -> None:
        async with unit_of_work(self._sessionmaker) as session:
            await runtime.learn_identity(session, account_id, tg_user_id, username)

    def _maybe_freeze(self) -> None:
        """Once started clients have settled, move everything alive into the garbage
        collector's permanent generation.

        A thousand Telethon clients make a heap of millions of long-lived objects; a full
        collection walks all of them and held the event loop for 0.4-0.6 s every few
        seconds under load (the reply latency tail, bench/fleet.py). Frozen objects are
        not walked; what the clients allocate from now on is collected as usual. Each freeze
        first unfreezes, so the clients of runners stopped meanwhile are collected then.
        """
        if self._freeze_at is None or time.monotonic() < self._freeze_at:
            return
        self._freeze_at = None
        started = time.monotonic()
        gc.unfreeze()  # clients stopped since the last freeze become collectable again
        gc.collect()
        gc.freeze()
        log.info(
            "worker.gc_frozen",
            objects=gc.get_freeze_count(),
            seconds=round(time.monotonic() - started, 3),
        )

    def _held_back(self, account: DesiredAccount, secret_version: int | None) -> bool:
        """Whether a quarantine or error still holds this account (no operator act since)."""
        held = self._held.get(account.id)
        if held is None and account.observed_state in HELD_STATES:
            held = _Held(account.observed_restart_seq, account.observed_secret_version)
        if held is None:
            return False
        if account.restart_seq > held.restart_seq:
            return False
        return not (
            secret_version is not None
            and held.secret_version is not None
            and secret_version > held.secret_version
        )

    def _reap(self) -> bool:
        """Forget runners that ended (remembering which ended held); whether any did."""
        ended = False
        for account_id, runner in list(self.runners.items()):
            if runner.task is not None and runner.task.done():
                ended = True
                del self.runners[account_id]
                if runner.held:
                    self._held[account_id] = _Held(runner.restart_seq, runner.secret_version)
        return ended

    async def _stop_accounts(self, account_ids: set[uuid.UUID]) -> None:
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
                await asyncio.wait_for(self.writer.flush(), STOP_FLUSH_TIMEOUT)
        self._dirty = True

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._stopping.discard(task)
        self._dirty = True
        self._wake.set()  # a restart continues at once

    def _is_stopping(self, account_id: uuid.UUID) -> bool:
        return any(t.get_name() == f"stop:{account_id}" for t in self._stopping)

    def _retire(self, runner: AccountRunner) -> None:
        """Stop a runner in the background; it leaves ``runners`` at once."""
        self.runners.pop(runner.account_id, None)
        self._dirty = True
        runner.request_stop()
        task = asyncio.create_task(
            runner.stop(timeout=self._shutdown_timeout), name=f"stop:{runner.account_id}"
        )
        self._stopping.add(task)
        task.add_done_callback(self._stopped)

    async def _start_many(
        self, accounts: list[DesiredAccount], secrets: dict[uuid.UUID, tuple[int, str]]
    ) -> None:
        async with unit_of_work(self._sessionmaker) as session:
            if self.leases is not None and self.leases.registration is not None:
                # Every start carries the lease epoch: refused unless still validly held.
                valid = await lease_service.held(session, self.leases.registration)
                refused = [a for a in accounts if a.id not in valid]
                if refused:
                    log.warning("worker.start_refused_stale_lease", accounts=len(refused))
                    self._dirty = True
                accounts = [a for a in accounts if a.id in valid]
                if not accounts:
                    return
            opened = await vault_service.decrypt_many(
                session, self._vault, self.audit_context, [a.id for a in accounts], purpose="run"
            )
        for account in accounts:
            if self.leases is not None and account.id not in self.leases.held:
                continue  # handed over while decrypting: never start what is not ours
            result = opened.get(account.id)
            self._held.pop(account.id, None)
            if isinstance(result, Decrypted):
                runner = AccountRunner(account, result.record, result.version, self.context)
                self.runners[account.id] = runner
                runner.start()
                continue
            code = result.code if isinstance(result, AppError) else "session_missing"
            message = result.message if isinstance(result, AppError) else "no session"
            version = secrets.get(account.id, (None, ""))[0]
            self._held[account.id] = _Held(account.restart_seq, version)
            if account.observed_state != State.ERROR:
                self.writer.state(
                    StateChange(
                        account_id=account.id,
                        state=State.ERROR,
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

    async def _refresh_groups(self) -> None:
        self._groups_dirty = False
        self._groups_loaded_at = time.monotonic()
        ids: Collection[uuid.UUID] = list(self.runners)
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            groups = await runtime.load_groups(session, ids)
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
            missing = {ref for ref in wanted if ref not in self.context.playbooks and ref[1]}
            compiled = await playbook_service.load_compiled(session, missing) if missing else {}
        self.context.playbooks.update(compiled)
        self.context.latest.clear()
        self.context.latest.update(latest)
        self.context.groups.clear()
        self.context.groups.update(groups)

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
        counts[State.ERROR] = counts.get(State.ERROR, 0) + sum(
            1 for account_id in self._held if account_id not in self.runners
        )
        for state in STATES:
            metrics.WORKER_ACCOUNTS.labels(state).set(counts.get(state, 0))
        metrics.ACCOUNTS_FLOOD_WAITING.set(counts.get(State.FLOOD_WAIT, 0))
        metrics.RETRY_BUDGET_TOKENS.set(self.context.budget.available)
        metrics.STATUS_PENDING.set(self.writer.pending)
        if metrics.per_account_enabled():
            metrics.ACCOUNT_UP.clear()
            for runner in self.runners.values():
                metrics.ACCOUNT_UP.labels(runner.label).set(
                    1 if runner.state == State.ONLINE else 0
                )
        if self.leases is not None:
            self.leases.observe_metrics()


def _app_credentials(settings: Settings) -> tuple[int, str]:
    """The Telegram app the clients present; settings validation ensures both or neither."""
    if settings.telegram_api_id is not None and settings.telegram_api_hash is not None:
        return settings.telegram_api_id, settings.telegram_api_hash.get_secret_value()
    return DEMO_API_ID, DEMO_API_HASH
