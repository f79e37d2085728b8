"""The evaluator: turns the fleet's state into alerts, every ``interval`` seconds, and feeds
them to the dispatcher; exactly one per deployment.

Sources (each a condition re-read from the database, so a restart or a new leader finds the
same alerts, and an alert resolves when its condition ends):

* per account: ``AccountQuarantined`` / ``AccountBanned`` (quarantined, by reason),
  ``AccountFloodWait`` (a flood wait longer than the threshold), ``GroupDisabled``
  (a group error switched replies off in a group);
* fleet: ``FleetOnlineRatioLow``, ``WorkerLost`` (a worker whose lease expired without a
  drain, in the last hour), ``DatabaseUnreachable`` (the evaluation's own query failed),
  ``TelegramDcUnreachable`` / ``TelegramUnreachable`` (the network monitor),
  ``AuditWriteFailures`` (this process's audit appends failed) and
  ``VaultDecryptFailures`` (failed ``session.decrypt`` records in the audit log, fleet-wide).

Leadership: on SQLite the one process evaluates. On PostgreSQL every API process runs an
:class:`Evaluator`, and only the holder of a session-level advisory lock (held on a dedicated
connection) evaluates and notifies; when it dies its connection closes, the lock is free, and
the next process to try (every ``LEADER_RETRY`` seconds) takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet.account import groups as account_groups
from tgfleet.account import service as account_service
from tgfleet.alert import service as alert_service
from tgfleet.alert.engine import Dispatcher
from tgfleet.alert.schemas import Alert
from tgfleet.audit import service as audit_service
from tgfleet.health.network import NetworkSnapshot
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.models import AccountState

log = get_logger(__name__)

#: The advisory lock id of the alert evaluator (any constant unique to tgfleet).
LEADER_LOCK: Final = 0x7467666C  # "tgfl"
LEADER_RETRY: Final = 5.0
#: Reasons of a quarantine that mean the account is gone (worker.classify RETIRE rules).
BANNED_REASONS: Final = frozenset({"banned", "deactivated", "phone_banned"})
#: How long a counted failure keeps its alert firing after the last one.
FAILURE_WINDOW: Final = timedelta(minutes=10)
WORKER_LOST_WINDOW: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """``online_ratio_for``: seconds the online ratio must stay below ``online_ratio``
    before ``FleetOnlineRatioLow`` fires (a Prometheus rule's ``for``): at every start the
    accounts are still connecting, and a fleet-wide alert for that woke someone up."""

    online_ratio: float = 0.9
    flood_wait_seconds: float = 300.0
    online_ratio_for: float = 300.0


def _audit_write_failures() -> float:
    return REGISTRY.get_sample_value("tgfleet_audit_write_failures_total") or 0.0


def _alert(name: str, severity: str, summary: str, description: str = "", **labels: str) -> Alert:
    return Alert(
        labels={"alertname": name, "severity": severity, **labels},
        annotations={
            "summary": summary,
            "description": description,
            "runbook_url": f"docs/alerting.md#{name.lower()}",
        },
    )


class Evaluator(TaskLifecycle):
    task_name = "alert:evaluator"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        *,
        interval: float = 2.0,
        thresholds: Thresholds | None = None,
        network_snapshot: Callable[[], NetworkSnapshot] | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.dispatcher = dispatcher
        self.interval = interval
        self.thresholds = thresholds or Thresholds()
        self._network_snapshot = network_snapshot
        self._engine = engine
        self._lock_connection: AsyncConnection | None = None
        self.leader = False
        self.evaluations = 0
        self._firing: dict[str, Alert] = {}
        #: Alerts with a ``for`` duration, by name; and when each one's condition began.
        self._hold_for = {
            "FleetOnlineRatioLow": timedelta(seconds=self.thresholds.online_ratio_for)
        }
        self._pending: dict[str, datetime] = {}
        self._audit_failures_seen = _audit_write_failures()
        self._audit_failed_at: datetime | None = None
        self._restored = False

    # ---- lifecycle

    async def stop(self) -> None:
        await super().stop()
        await self.dispatcher.stop()
        await self._release()

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                if await self._lead():
                    await self.evaluate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must live: next tick retries
                log.warning("alert.evaluation_failed", error=type(exc).__name__)
            delay = self.interval if self.leader else LEADER_RETRY
            await asyncio.sleep(max(0.05, delay - (time.monotonic() - started)))

    # ---- leadership

    async def _lead(self) -> bool:
        """Whether this process evaluates now (and becomes the leader if it can)."""
        engine = self._engine
        if engine is None or engine.dialect.name != "postgresql":
            if not self.leader:
                await self._became_leader()
            return True
        if self._lock_connection is not None:
            try:
                await self._lock_connection.execute(text("SELECT 1"))
            except Exception:  # noqa: BLE001 - the connection, and with it the lock, is gone
                await self._lost_leadership()
                return False
            return True
        connection = await engine.connect()
        try:
            got = (
                await connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK}
                )
            ).scalar_one()
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._lock_connection = connection
        await self._became_leader()
        return True

    async def _became_leader(self) -> None:
        self.leader = True
        log.info("alert.leader")
        # What the previous leader knew: the stored firing alerts (its log is in the
        # database too), so nothing is lost and nothing is sent twice.
        if not self._restored:
            async with unit_of_work(self._sessionmaker, read_only=True) as session:
                stored = await alert_service.firing_alerts(session, utcnow())
                silences = await alert_service.current_silences(session)
            self.dispatcher.set_silences(silences)
            self.dispatcher.put(stored)
            self._firing = {a.fingerprint: a for a in stored}
            self._restored = True
        self.dispatcher.start()

    async def _lost_leadership(self) -> None:
        log.warning("alert.leadership_lost")
        self.leader = False
        self._restored = False
        await self.dispatcher.stop()
        await self._release()

    async def _release(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        if connection is not None:
            # Invalidate, not close: a closed connection goes back to the pool still holding
            # the session-level lock; an invalidated one is really disconnected.
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()

    # ---- one evaluation

    async def evaluate(self, now: datetime | None = None) -> list[Alert]:
        """Read every source, resolve what stopped firing, store and dispatch (``now``: the
        evaluation's time, the clock's by default)."""
        now = utcnow() if now is None else now
        self.evaluations += 1
        current: dict[str, Alert] = {}
        try:
            async with unit_of_work(self._sessionmaker, read_only=True) as session:
                for alert in await self._from_database(session, now):
                    current[alert.fingerprint] = alert
                silences = await alert_service.current_silences(session)
            self.dispatcher.set_silences(silences)
            database_up = True
        except Exception as exc:  # noqa: BLE001 - the database is the one thing down
            log.warning("alert.database_unreachable", error=type(exc).__name__)
            database_up = False
            # Keep what the database said last: a database outage resolves nothing.
            current = {fp: a for fp, a in self._firing.items() if a.name != "DatabaseUnreachable"}
            unreachable = _alert(
                "DatabaseUnreachable",
                "critical",
                "tgfleet cannot reach its database",
                f"The alert evaluator's query failed ({type(exc).__name__}).",
                scope="fleet",
            )
            current[unreachable.fingerprint] = unreachable
        for alert in self._from_process(now):
            current[alert.fingerprint] = alert
        self._hold(current, now)
        changed = self._diff(current, now)
        if changed and database_up:
            async with unit_of_work(self._sessionmaker) as session:
                await alert_service.store_alerts(session, changed, now)
        if changed:
            self.dispatcher.put(changed)
        return list(self._firing.values())

    def _hold(self, current: dict[str, Alert], now: datetime) -> None:
        """Drop from ``current`` the alerts whose condition has not yet held for their
        ``for`` duration (pending); one already firing (or restored firing) stays."""
        for fingerprint in [fp for fp in self._pending if fp not in current]:
            del self._pending[fingerprint]  # the condition ended: its clock starts over
        for fingerprint, alert in list(current.items()):
            hold = self._hold_for.get(alert.name)
            if hold is None or fingerprint in self._firing:
                continue
            since = self._pending.setdefault(fingerprint, now)
            if now - since < hold:
                del current[fingerprint]

    def _diff(self, current: dict[str, Alert], now: datetime) -> list[Alert]:
        """New alerts, and alerts that stopped firing (resolved now)."""
        changed: list[Alert] = []
        for fp, seen in current.items():
            known = self._firing.get(fp)
            if known is None or known.annotations != seen.annotations:
                starts_at = known.starts_at if known is not None else now
                alert = Alert(seen.labels, seen.annotations, starts_at, None)
                changed.append(alert)
                self._firing[fp] = alert
        for fp in [fp for fp in self._firing if fp not in current]:
            gone = self._firing.pop(fp)
            changed.append(Alert(gone.labels, gone.annotations, gone.starts_at, now))
        return changed

    async def _from_database(self, session: AsyncSession, now: datetime) -> list[Alert]:
        found: list[Alert] = []
        for status in await account_service.accounts_in_states(
            session, [AccountState.QUARANTINED, AccountState.FLOOD_WAIT]
        ):
            if status.state is AccountState.QUARANTINED:
                reason = status.reason or status.last_error_code or "unknown"
                banned = reason in BANNED_REASONS
                # Short per-account text, one shared description: 50 accounts in one
                # message, 10,000 in as few as the 4,096-character limit allows.
                found.append(
                    _alert(
                        "AccountBanned" if banned else "AccountQuarantined",
                        "warning",
                        f"{status.label} ({reason})",
                        "Banned or deleted by Telegram: its client is off for good; replace the "
                        "account."
                        if banned
                        else "Quarantined: its client stays disconnected until an operator "
                        "restarts it or re-imports its session.",
                        scope="account",
                        account=status.label,
                        reason=reason,
                    )
                )
            elif status.wait_until is not None:
                seconds = (status.wait_until - status.since).total_seconds()
                if seconds >= self.thresholds.flood_wait_seconds:
                    found.append(
                        _alert(
                            "AccountFloodWait",
                            "warning",
                            f"{status.label} waits {int(seconds)} s",
                            "Telegram imposed a long flood wait: the account sends nothing "
                            "until it ends.",
                            scope="account",
                            account=status.label,
                        )
                    )
        for account, group in await account_groups.groups_switched_off(session):
            found.append(
                _alert(
                    "GroupDisabled",
                    "warning",
                    f"{account.label} in {group.title or group.chat_id} ({group.disabled_reason})",
                    "A group error switched replies off in the group; enable it again once "
                    "the cause is fixed.",
                    scope="account",
                    account=account.label,
                    group=str(group.chat_id),
                    reason=group.disabled_reason or "",
                )
            )
        summary = await account_service.fleet_summary(session)
        if summary.online_ratio < self.thresholds.online_ratio:
            found.append(
                _alert(
                    "FleetOnlineRatioLow",
                    "critical",
                    f"Only {summary.online_ratio:.0%} of the accounts desired running are online",
                    f"{summary.running_online} of {summary.desired_running} online.",
                    scope="fleet",
                )
            )
        found.extend(
            _alert(
                "WorkerLost",
                "critical",
                f"Worker {worker.id} stopped renewing its lease",
                f"Its lease expired at {worker.expires_at.isoformat()} without a drain; the "
                "other workers take its accounts over.",
                scope="fleet",
                worker=worker.id,
            )
            for worker in await lease_service.list_workers(session)
            if worker.lost and worker.expires_at > now - WORKER_LOST_WINDOW
        )
        failed_decrypts = await audit_service.count(
            session,
            action="session.decrypt",
            result=audit_service.FAILURE,
            since=now - FAILURE_WINDOW,
        )
        if failed_decrypts:
            found.append(
                _alert(
                    "VaultDecryptFailures",
                    "critical",
                    f"{failed_decrypts} session decrypts failed in the last 10 minutes",
                    "A missing key or a tampered secret: see the audit log "
                    "(action session.decrypt, result failure).",
                    scope="fleet",
                )
            )
        return found

    def _from_process(self, now: datetime) -> list[Alert]:
        found: list[Alert] = []
        failures = _audit_write_failures()
        if failures > self._audit_failures_seen:
            self._audit_failures_seen = failures
            self._audit_failed_at = now
        if self._audit_failed_at is not None and self._audit_failed_at > now - FAILURE_WINDOW:
            found.append(
                _alert(
                    "AuditWriteFailures",
                    "critical",
                    "Audit records could not be written",
                    "The actions they recorded were refused. Check the database.",
                    scope="fleet",
                )
            )
        snapshot = self._network_snapshot() if self._network_snapshot is not None else None
        probes = snapshot.probes if snapshot is not None else {}
        down = sorted(dc for dc, probe in probes.items() if not probe.up)
        if probes and len(down) == len(probes):
            found.append(
                _alert(
                    "TelegramUnreachable",
                    "critical",
                    "No Telegram data centre answers a TCP connect",
                    "Every configured DC failed its probe: the network or Telegram is down.",
                    scope="fleet",
                )
            )
        else:
            found.extend(
                _alert(
                    "TelegramDcUnreachable",
                    "warning",
                    f"Telegram DC {dc} does not answer a TCP connect",
                    "Accounts homed on it cannot connect.",
                    scope="fleet",
                    dc=str(dc),
                )
                for dc in down
            )
        return found
