"""Every Prometheus metric of tgfleet, defined once (DESIGN §9).

Names carry the ``tgfleet_`` prefix and a unit suffix; labels are bounded sets (HTTP route
*templates*, states, error classes, reasons from fixed tables, receiver names from the
operator's configuration, DC numbers). Per-account series exist only when
``TGFLEET_METRICS_PER_ACCOUNT`` is on (:func:`per_account_enabled`).

Registry: the process-wide default registry. Each process is its own scrape target (the API
replicas on their HTTP port, each ``tgfleet worker`` on ``TGFLEET_WORKER_METRICS_PORT``,
``tgfleet run`` on its one port). When ``PROMETHEUS_MULTIPROC_DIR`` is set (uvicorn with
several processes behind one port), :func:`exposition` aggregates the processes' files with
prometheus_client's multiprocess collector; see docs/observability.md.

Values an operator wants fleet-wide (accounts by state, workers alive, the online ratio)
are read from the database by the API at scrape time
(:class:`tgfleet.telemetry.service.FleetGauges`), cached a few seconds; a worker exports
what it sees itself (its clients by state).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4  # what Prometheus 2.x parses as text
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: Latency buckets for fast operations (HTTP, database, sends), seconds.
FAST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: Buckets for slow operations (connects, LLM calls, rotations), seconds.
SLOW_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Flood waits: a second to a day.
FLOOD_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 14400, 86400)

# --------------------------------------------------------------------------- process

BUILD_INFO = Info("tgfleet_build", "Version of this tgfleet process (label version).")
PROCESS_ROLE = Gauge(
    "tgfleet_process_role",
    "1 for the roles this process plays (api, worker).",
    ["role"],
    multiprocess_mode="max",
)
EVENT_LOOP_LAG = Histogram(
    "tgfleet_event_loop_lag_seconds",
    "How late the event loop ran a timer it was asked to run (sampled every second).",
    buckets=FAST_BUCKETS,
)

# --------------------------------------------------------------------------- HTTP

HTTP_REQUESTS = Counter(
    "tgfleet_http_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "tgfleet_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "tgfleet_http_requests_in_progress",
    "HTTP requests being answered now.",
    ["method"],
    multiprocess_mode="livesum",
)
HTTP_RESPONSE_SIZE = Histogram(
    "tgfleet_http_response_size_bytes",
    "Size of HTTP response bodies, by route template.",
    ["route"],
    buckets=(100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000),
)

# --------------------------------------------------------------------------- fleet (database)

ACCOUNTS = Gauge(
    "tgfleet_accounts",
    "Accounts by observed state, fleet-wide (read from the database by the API).",
    ["state"],
    multiprocess_mode="mostrecent",
)
ACCOUNTS_DESIRED = Gauge(
    "tgfleet_accounts_desired",
    "Accounts by desired state (running, stopped), fleet-wide.",
    ["desired"],
    multiprocess_mode="mostrecent",
)
FLEET_ONLINE_RATIO = Gauge(
    "tgfleet_fleet_online_ratio",
    "Online accounts / accounts desired running (1 when none is desired running).",
    multiprocess_mode="mostrecent",
)
WORKERS_ALIVE = Gauge(
    "tgfleet_workers_alive",
    "Registered workers whose lease is valid (PostgreSQL); 1 for tgfleet run.",
    multiprocess_mode="mostrecent",
)
WORKERS_CAPACITY = Gauge(
    "tgfleet_workers_capacity_accounts",
    "Sum of the live workers' capacities, in accounts.",
    multiprocess_mode="mostrecent",
)
FLEET_REFRESH_DURATION = Histogram(
    "tgfleet_fleet_metrics_refresh_duration_seconds",
    "Time to read the fleet-wide gauges from the database.",
    buckets=FAST_BUCKETS,
)

# --------------------------------------------------------------------------- worker: accounts

WORKER_ACCOUNTS = Gauge(
    "tgfleet_worker_accounts",
    "Accounts whose client this process runs, by state.",
    ["state"],
    multiprocess_mode="livesum",
)
STATE_TRANSITIONS = Counter(
    "tgfleet_account_state_transitions_total",
    "Account state changes observed by this process's clients.",
    ["from_state", "to_state"],
)
MESSAGES_RECEIVED = Counter(
    "tgfleet_messages_received_total",
    "Group messages the fleet's clients received.",
)
REPLIES_SENT = Counter(
    "tgfleet_replies_sent_total",
    "Replies sent by the fleet's clients.",
    ["source"],
)
REPLIES_SUPPRESSED = Counter(
    "tgfleet_replies_suppressed_total",
    "Messages not answered, by reason (limit, probability, group_disabled, flood_wait, ...).",
    ["reason"],
)
REPLY_GATE_QUESTIONS = Counter(
    "tgfleet_reply_gate_questions_total",
    "Reply admissions asked of PostgreSQL (several workers), by its verdict.",
    ["verdict"],
)
REPLY_GATE_FAILURES = Counter(
    "tgfleet_reply_gate_failures_total",
    "Reply admissions that could not be asked (database unreachable or slow): not sent.",
)
SEND_DURATION = Histogram(
    "tgfleet_send_duration_seconds",
    "Time of one messages.sendMessage call that succeeded.",
    buckets=FAST_BUCKETS,
)
SEND_FAILURES = Counter(
    "tgfleet_send_failures_total",
    "messages.sendMessage calls that failed, by error class.",
    ["error_class"],
)
ERRORS = Counter(
    "tgfleet_errors_total",
    "Telegram and connection errors met by the clients, by class and reason.",
    ["error_class", "reason"],
)
FLOOD_WAIT_SECONDS = Histogram(
    "tgfleet_flood_wait_seconds",
    "Flood waits imposed by Telegram, in seconds, by scope (account, chat).",
    ["scope"],
    buckets=FLOOD_BUCKETS,
)
ACCOUNTS_FLOOD_WAITING = Gauge(
    "tgfleet_accounts_flood_waiting",
    "Accounts of this process in an account-wide flood wait now.",
    multiprocess_mode="livesum",
)
RECONNECTS = Counter(
    "tgfleet_reconnects_total",
    "Client reconnects after a dropped connection.",
)
QUARANTINES = Counter(
    "tgfleet_quarantines_total",
    "Accounts quarantined (or retired), by reason.",
    ["reason"],
)
CONNECT_DURATION = Histogram(
    "tgfleet_client_connect_duration_seconds",
    "Time for a client to connect and authorise (successful attempts).",
    buckets=SLOW_BUCKETS,
)
CONNECT_ATTEMPTS = Counter(
    "tgfleet_client_connect_attempts_total",
    "Client connect attempts, by outcome.",
    ["outcome"],
)
RETRY_BUDGET_TOKENS = Gauge(
    "tgfleet_retry_budget_tokens",
    "Reconnect tokens left in this worker's retry budget.",
    multiprocess_mode="livesum",
)
GROUPS_DISABLED = Counter(
    "tgfleet_groups_disabled_total",
    "Groups switched off after a group error, by reason.",
    ["reason"],
)
LLM_REQUESTS = Counter(
    "tgfleet_llm_requests_total",
    "Calls to the LLM provider, by outcome (ok, or the fallback reason).",
    ["outcome"],
)
LLM_DURATION = Histogram(
    "tgfleet_llm_request_duration_seconds",
    "Time of one LLM call.",
    buckets=SLOW_BUCKETS,
)
STATUS_FLUSHES = Counter(
    "tgfleet_status_flushes_total",
    "Status batches written to the database, by outcome.",
    ["outcome"],
)
STATUS_PENDING = Gauge(
    "tgfleet_status_pending",
    "Observations waiting to be written to the database.",
    multiprocess_mode="livesum",
)
STATUS_DROPPED = Counter(
    "tgfleet_status_dropped_total",
    "Observations dropped because the status buffer was full.",
)
HOUSEKEEPING_PRUNED = Counter(
    "tgfleet_housekeeping_pruned_total",
    "Rows pruned by the API's housekeeping: traffic minutes deleted, reply texts blanked.",
    ["what"],
)
LIVE_QUERIES = Counter(
    "tgfleet_console_live_queries_total",
    "Database queries of the console's live feed (tails and fleet summaries): one reader "
    "per API process, however many pages are open.",
)
LIVE_SUBSCRIBERS = Gauge(
    "tgfleet_console_live_subscribers",
    "Console pages subscribed to the live feed now.",
    multiprocess_mode="livesum",
)
RECONCILE_DURATION = Histogram(
    "tgfleet_reconcile_duration_seconds",
    "Time of one reconcile of desired and running accounts.",
    ["kind"],
    buckets=FAST_BUCKETS,
)
COMMANDS = Counter(
    "tgfleet_commands_received_total",
    "Wake-ups of the worker by operator commands, by channel (notify, poll).",
    ["via"],
)

# Per-account series: only when TGFLEET_METRICS_PER_ACCOUNT is on.
ACCOUNT_MESSAGES = Counter(
    "tgfleet_account_messages_received_total",
    "Group messages received, per account (TGFLEET_METRICS_PER_ACCOUNT).",
    ["account"],
)
ACCOUNT_REPLIES = Counter(
    "tgfleet_account_replies_sent_total",
    "Replies sent, per account (TGFLEET_METRICS_PER_ACCOUNT).",
    ["account"],
)
ACCOUNT_UP = Gauge(
    "tgfleet_account_online",
    "1 while the account is online, per account (TGFLEET_METRICS_PER_ACCOUNT).",
    ["account"],
    multiprocess_mode="livemax",
)

# --------------------------------------------------------------------------- leases

LEASE_CLAIMS = Counter(
    "tgfleet_lease_claims_total",
    "Account leases claimed by this worker.",
)
LEASE_RENEWALS = Counter(
    "tgfleet_lease_renewals_total",
    "Worker lease renewals (heartbeats), by outcome.",
    ["outcome"],
)
LEASE_RENEWAL_DURATION = Histogram(
    "tgfleet_lease_renewal_duration_seconds",
    "Time of one worker lease renewal.",
    buckets=FAST_BUCKETS,
)
LEASE_RELEASES = Counter(
    "tgfleet_lease_releases_total",
    "Account leases given back, by reason (handover, drain, stopped).",
    ["reason"],
)
LEASE_LOSSES = Counter(
    "tgfleet_lease_losses_total",
    "Times this worker lost its leases, by reason (fenced, superseded).",
    ["reason"],
)
LEASE_FAILOVERS = Counter(
    "tgfleet_lease_failovers_total",
    "Accounts freed from dead or superseded workers by the leader.",
)
LEASES_HELD = Gauge(
    "tgfleet_lease_held_accounts",
    "Account leases this worker holds.",
    multiprocess_mode="livesum",
)
LEASE_UNASSIGNED = Gauge(
    "tgfleet_lease_unassigned_accounts",
    "Accounts desired running that no worker holds (reported by the leader).",
    multiprocess_mode="livemax",
)
WORKER_FENCED = Gauge(
    "tgfleet_worker_fenced",
    "1 while this worker has fenced itself (its lease could not be renewed).",
    multiprocess_mode="livemax",
)
WORKER_LEADER = Gauge(
    "tgfleet_worker_leader",
    "1 while this worker is the leader (reaps dead workers, marks unassigned).",
    multiprocess_mode="livemax",
)

# --------------------------------------------------------------------------- vault

VAULT_IMPORTS = Counter(
    "tgfleet_vault_imports_total",
    "Sessions imported, by format and outcome (ok, rejected).",
    ["format", "outcome"],
)
VAULT_EXPORTS = Counter(
    "tgfleet_vault_exports_total",
    "Sessions exported, by outcome.",
    ["outcome"],
)
VAULT_DECRYPTS = Counter(
    "tgfleet_vault_decrypts_total",
    "Session secrets decrypted, by outcome (ok, failed).",
    ["outcome"],
)
VAULT_DECRYPT_DURATION = Histogram(
    "tgfleet_vault_decrypt_duration_seconds",
    "Time to decrypt one batch of session secrets.",
    buckets=FAST_BUCKETS,
)
VAULT_ROTATIONS = Counter(
    "tgfleet_vault_rotations_total",
    "Key rotations (re-wrap runs), by outcome.",
    ["outcome"],
)
VAULT_REWRAPPED = Counter(
    "tgfleet_vault_rewrapped_secrets_total",
    "Data keys re-wrapped under the active key by rotations.",
)
VAULT_KEYS = Gauge(
    "tgfleet_vault_keys_loaded",
    "Key-encryption keys in the loaded keyring.",
    multiprocess_mode="max",
)

# --------------------------------------------------------------------------- audit

AUDIT_WRITES = Counter(
    "tgfleet_audit_writes_total",
    "Audit records appended.",
)
AUDIT_WRITE_FAILURES = Counter(
    "tgfleet_audit_write_failures_total",
    "Audit appends that failed (the action they recorded failed with them).",
)
AUDIT_WRITE_DURATION = Histogram(
    "tgfleet_audit_write_duration_seconds",
    "Time to append one batch of audit records (lock, chain, insert).",
    buckets=FAST_BUCKETS,
)

# --------------------------------------------------------------------------- auth

LOGINS = Counter(
    "tgfleet_logins_total",
    "Password logins, by outcome (success, failure, throttled).",
    ["outcome"],
)
LOGIN_THROTTLES = Counter(
    "tgfleet_login_throttles_total",
    "Logins refused because of too many recent failures.",
)
AUTH_DENIED = Counter(
    "tgfleet_auth_denied_total",
    "Requests refused by authentication or authorisation, by reason.",
    ["reason"],
)

# --------------------------------------------------------------------------- database

DB_POOL_SIZE = Gauge(
    "tgfleet_db_pool_size",
    "Connections the pool keeps (its configured size).",
    multiprocess_mode="livesum",
)
DB_POOL_CHECKED_OUT = Gauge(
    "tgfleet_db_pool_checked_out",
    "Connections in use now.",
    multiprocess_mode="livesum",
)
DB_POOL_OVERFLOW = Gauge(
    "tgfleet_db_pool_overflow",
    "Connections open beyond the pool size now.",
    multiprocess_mode="livesum",
)
DB_QUERY_DURATION = Histogram(
    "tgfleet_db_query_duration_seconds",
    "Time of one database statement, by kind (select, insert, update, delete, other).",
    ["operation"],
    buckets=FAST_BUCKETS,
)
DB_ERRORS = Counter(
    "tgfleet_db_errors_total",
    "Database statements that raised, by exception type.",
    ["error"],
)

# --------------------------------------------------------------------------- alerting

ALERT_NOTIFICATIONS = Counter(
    "tgfleet_alert_notifications_total",
    "Alert notifications sent, by receiver and outcome (sent, failed, retried).",
    ["receiver", "outcome"],
)
ALERT_NOTIFICATION_DURATION = Histogram(
    "tgfleet_alert_notification_duration_seconds",
    "Time to deliver one notification, by receiver.",
    ["receiver"],
    buckets=SLOW_BUCKETS,
)
ALERTS_FIRING = Gauge(
    "tgfleet_alerts_firing",
    "Alerts firing now, by severity.",
    ["severity"],
    multiprocess_mode="mostrecent",
)
ALERT_LAST_DELIVERY = Gauge(
    "tgfleet_alert_last_delivery_timestamp_seconds",
    "Unix time of the last successful notification delivery.",
    multiprocess_mode="max",
)

# --------------------------------------------------------------------------- network, health

DC_UP = Gauge(
    "tgfleet_telegram_dc_up",
    "1 when the last TCP connect probe to the Telegram DC succeeded.",
    ["dc"],
    multiprocess_mode="mostrecent",
)
DC_PROBE_DURATION = Histogram(
    "tgfleet_telegram_dc_probe_duration_seconds",
    "Time of a successful TCP connect probe to a Telegram DC.",
    ["dc"],
    buckets=FAST_BUCKETS,
)
DC_PROBES = Counter(
    "tgfleet_telegram_dc_probes_total",
    "TCP connect probes to Telegram DCs, by outcome.",
    ["dc", "outcome"],
)
HEALTH_CHECK_STATUS = Gauge(
    "tgfleet_health_check_status",
    "Last result of each /health check: 1 pass, 0.5 warn, 0 fail.",
    ["check"],
    multiprocess_mode="mostrecent",
)
HEALTH_CHECK_DURATION = Histogram(
    "tgfleet_health_check_duration_seconds",
    "Time of each /health check.",
    ["check"],
    buckets=FAST_BUCKETS,
)

# Series of fixed label values exist from the start at 0, so ``increase()`` and alerts see
# their first event (a series born with value 1 has no earlier sample to increase from).
for _counter, _values in (
    (VAULT_DECRYPTS, ("ok", "failed")),
    (VAULT_EXPORTS, ("ok", "failed")),
    (VAULT_ROTATIONS, ("ok", "failed")),
    (LOGINS, ("success", "failure", "throttled")),
    (LEASE_RENEWALS, ("ok", "failed", "lost")),
    (LEASE_LOSSES, ("fenced", "superseded")),
    (LEASE_RELEASES, ("handover", "drain", "stopped")),
    (STATUS_FLUSHES, ("ok", "failed")),
    (CONNECT_ATTEMPTS, ("ok", "failed")),
    (FLOOD_WAIT_SECONDS, ("account", "chat")),
    (
        REPLY_GATE_QUESTIONS,
        (
            "admitted",
            "from_fleet",
            "claimed_by_other",
            "duplicate",
            "limit:min_interval",
            "limit:account_hourly",
            "limit:group_hourly",
        ),
    ),
):
    for _value in _values:
        _counter.labels(_value)

# --------------------------------------------------------------------------- helpers

_per_account = False


def configure(*, per_account: bool, version: str, roles: Iterable[str]) -> None:
    """Called once per process at start: the per-account switch and the build info."""
    global _per_account  # noqa: PLW0603 - one process-wide switch, set once at start
    _per_account = per_account
    BUILD_INFO.info({"version": version})
    for role in roles:
        PROCESS_ROLE.labels(role).set(1)


def per_account_enabled() -> bool:
    return _per_account


def status_value(status: str) -> float:
    """A health status as a number for :data:`HEALTH_CHECK_STATUS`."""
    return {"pass": 1.0, "warn": 0.5}.get(status, 0.0)


def observe_pool(pool: object) -> None:
    """Copy a SQLAlchemy ``QueuePool``'s counters into the pool gauges (at scrape time);
    other pools (SQLite's) have no such counters and are left out."""
    size, checked_out, overflow = (
        getattr(pool, name, None) for name in ("size", "checkedout", "overflow")
    )
    if callable(size) and callable(checked_out) and callable(overflow):
        DB_POOL_SIZE.set(size())
        DB_POOL_CHECKED_OUT.set(checked_out())
        DB_POOL_OVERFLOW.set(max(0, overflow()))


def exposition() -> bytes:
    """The text exposition of this process, or of every process sharing
    ``PROMETHEUS_MULTIPROC_DIR``."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
