"""The lease domain's SQL (PostgreSQL), by table: worker registration, account leases and
the unassigned statuses, reply claims and limit windows. Each statement is one round trip
whatever the number of accounts, so the coordination load grows with workers, not with
accounts (docs/scaling.md). The repositories run them; bench/leases.py EXPLAINs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from sqlalchemy import TextClause, text

from tgfleet.account.schemas import HELD_STATES
from tgfleet.models import AccountState, DesiredState, WorkerState


def _literal(*states: StrEnum) -> str:
    """States as SQL: ``'running'``, or ``('error', 'quarantined')`` for several."""
    quoted = ", ".join(f"'{state.value}'" for state in states)
    return quoted if len(states) == 1 else f"({quoted})"


#: The states the statements below name (``{desired_running}``...), from the enums.
STATES: Final[Mapping[str, str]] = {
    "desired_running": _literal(DesiredState.RUNNING),
    "worker_running": _literal(WorkerState.RUNNING),
    "worker_stopped": _literal(WorkerState.STOPPED),
    "unassigned": _literal(AccountState.UNASSIGNED),
    #: Statuses the leader never marks unassigned: already so, or held for an operator.
    "kept_statuses": _literal(AccountState.UNASSIGNED, *sorted(HELD_STATES)),
}


def sql(statement: str) -> TextClause:
    """``text(statement)`` with the states it names written in from :data:`STATES` as
    literals: PostgreSQL plans them as constants, and the text is the SQL that runs."""
    return text(statement.format_map(STATES))


# --- Workers: registration, the worker-level lease, the drain.

REGISTER = sql(
    """
    INSERT INTO worker (id, epoch, host, pid, version, capacity, state, started_at,
                        heartbeat_at, expires_at)
    VALUES (:id, 1, :host, :pid, :version, :capacity, {worker_running}, now(), now(),
            now() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE SET
        epoch = worker.epoch + 1, host = excluded.host, pid = excluded.pid,
        version = excluded.version, capacity = excluded.capacity, state = {worker_running},
        started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at
    RETURNING epoch, expires_at
    """
)

CURRENT_EPOCH = text("SELECT epoch FROM worker WHERE id = :id")

HEARTBEAT = sql(
    """
    UPDATE worker SET heartbeat_at = now(), expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :id AND epoch = :epoch AND state <> {worker_stopped} AND expires_at > now()
    RETURNING expires_at
    """
)

DEREGISTER = sql(
    """
    UPDATE worker SET state = {worker_stopped}, expires_at = now(), heartbeat_at = now()
    WHERE id = :id AND epoch = :epoch
    """
)

# Every registered worker (a small table): who is live, who is dead, who re-registered.
WORKER_CLOCK = sql(
    """
    SELECT id, epoch, state = {worker_running} AS running,
           EXTRACT(EPOCH FROM (expires_at - now())) AS expires_in,
           EXTRACT(EPOCH FROM (now() - started_at)) AS age
    FROM worker
    ORDER BY id
    """
)

WORKERS = text(
    """
    SELECT w.id, w.epoch, w.host, w.pid, w.version, w.capacity, w.state, w.started_at,
           w.heartbeat_at, w.expires_at, w.expires_at > now() AS alive,
           (SELECT count(*) FROM account_lease l
            WHERE l.worker_id = w.id AND l.epoch = w.epoch) AS held
    FROM worker w
    ORDER BY w.id
    """
)

PRUNE_WORKERS = text(
    """
    DELETE FROM worker w WHERE w.expires_at < now() - interval '1 day'
      AND NOT EXISTS (SELECT 1 FROM account_lease l WHERE l.worker_id = w.id)
    """
)


# --- Account leases, and the statuses of accounts no live worker holds.

# Lease rows exist for accounts desired running (created by the start commands and the
# leader's sweep); a free row has worker_id NULL and sits in the partial index
# ix_account_lease_free, so a claim reads free rows only, never the whole fleet.
ENSURE_FOR = text(
    """
    INSERT INTO account_lease (account_id)
    SELECT unnest(CAST(:ids AS uuid[]))
    ON CONFLICT (account_id) DO NOTHING
    """
)

ENSURE_ALL = sql(
    """
    INSERT INTO account_lease (account_id)
    SELECT a.id FROM account a
    WHERE a.desired_state = {desired_running}
      AND NOT EXISTS (SELECT 1 FROM account_lease l WHERE l.account_id = a.id)
    ON CONFLICT (account_id) DO NOTHING
    """
)

DROP_STOPPED_FREE = sql(
    """
    DELETE FROM account_lease l USING account a
    WHERE l.worker_id IS NULL AND a.id = l.account_id AND a.desired_state <> {desired_running}
    """
)

# Free rows of accounts desired running, locked with SKIP LOCKED: concurrent claimers split
# the candidates instead of waiting on each other. Only while the claimer's own lease holds.
CLAIM = sql(
    """
    WITH candidates AS (
        SELECT l.account_id
        FROM account_lease l
        JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
        WHERE l.worker_id IS NULL
        ORDER BY l.account_id
        LIMIT :limit
        FOR UPDATE OF l SKIP LOCKED
    )
    UPDATE account_lease l
    SET worker_id = :id, epoch = :epoch, acquired_at = now()
    FROM candidates c
    WHERE l.account_id = c.account_id
      AND EXISTS (SELECT 1 FROM worker me
                  WHERE me.id = :id AND me.epoch = :epoch AND me.expires_at > now())
    RETURNING l.account_id
    """
)

# The leader frees the leases of workers that expired more than `grace` ago (by then the
# holder has fenced itself) through ix_account_lease_worker_id, and those of earlier runs
# (epochs) of workers that registered again more than `grace` ago.
REAP_DEAD = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = ANY(CAST(:ids AS varchar[]))
    """
)

REAP_SUPERSEDED = text(
    """
    UPDATE account_lease l SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    FROM unnest(CAST(:ids AS varchar[]), CAST(:epochs AS bigint[])) AS s(id, epoch)
    WHERE l.worker_id = s.id AND l.epoch < s.epoch
    """
)

HELD = text(
    """
    SELECT l.account_id FROM account_lease l JOIN worker w ON w.id = l.worker_id
    WHERE l.worker_id = :id AND l.epoch = :epoch AND w.epoch = :epoch
      AND w.expires_at > now()
    """
)

RELEASE_SOME = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = :id AND epoch = :epoch AND account_id = ANY(:ids)
    """
)

RELEASE_ALL = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = :id AND epoch = :epoch
    """
)

RELEASE_STOPPED = sql(
    """
    DELETE FROM account_lease l USING account a
    WHERE a.id = l.account_id AND l.worker_id = :id AND l.epoch = :epoch
      AND a.desired_state <> {desired_running}
    """
)

RUNNING_ACCOUNTS = sql("SELECT count(*) FROM account WHERE desired_state = {desired_running}")

HOLDERS = text(
    """
    SELECT l.account_id, l.worker_id FROM account_lease l JOIN worker w ON w.id = l.worker_id
    WHERE l.account_id = ANY(:ids) AND l.epoch = w.epoch AND w.expires_at > now()
    """
)

UNASSIGNED = sql(
    """
    SELECT count(*) FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id
    WHERE a.desired_state = {desired_running}
      AND (l.worker_id IS NULL OR w.id IS NULL OR w.epoch <> l.epoch OR w.expires_at <= now())
    """
)

# Status rows of accounts desired running whose lease is free (nobody holds it, or the
# leader reaped it from a dead worker) say `unassigned`, so the API and alerts see them;
# the worker that claims one moves it on. Reads free lease rows only (ix_account_lease_free).
MARK_UNASSIGNED = sql(
    """
    UPDATE account_status s
    SET state = {unassigned}, since = now(), updated_at = now(), worker_id = NULL,
        reason = 'no_worker'
    FROM account_lease l
    JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
    WHERE l.worker_id IS NULL AND s.account_id = l.account_id
      AND s.state NOT IN {kept_statuses}
      AND s.updated_at < now() - make_interval(secs => :grace)
    """
)

# The same for accounts no worker ever ran (no status row yet).
INSERT_UNASSIGNED = sql(
    """
    INSERT INTO account_status (account_id, state, since, reason, restart_seq,
                                messages_received, replies_sent, replies_suppressed,
                                reconnects, updated_at)
    SELECT l.account_id, {unassigned}, now(), 'no_worker', 0, 0, 0, 0, 0, now()
    FROM account_lease l
    JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
    WHERE l.worker_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM account_status s WHERE s.account_id = l.account_id)
      AND a.updated_at < now() - make_interval(secs => :grace)
    ON CONFLICT (account_id) DO NOTHING
    """
)


# --- Replies (issue 13): one statement per decision; the functions are in migration 0007.

# Plain asyncpg statements: the per-reply hot path skips SQLAlchemy (half the client CPU).
ADMIT_REPLY = (
    "SELECT verdict, reserved_at, retry_in FROM tgfleet_reply_admit($1, $2, $3, $4, $5, $6,"
    " $7, $8, $9)"
)

RELEASE_REPLY = "SELECT tgfleet_reply_release($1, $2, $3, $4, $5)"

PRUNE_CLAIMS = text("DELETE FROM reply_claim WHERE expires_at < now()")

# A window whose newest reply is an hour old can never refuse anything again.
PRUNE_WINDOWS = text(
    """
    DELETE FROM reply_window
    WHERE coalesce(sent_at[cardinality(sent_at)], 0) < extract(epoch FROM now()) - 3600
    """
)
