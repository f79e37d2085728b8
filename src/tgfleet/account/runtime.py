"""The worker's side of the account domain: what it reads and what it records.

A worker reads every account's desired state with its last observed status
(:func:`load_desired`), the groups it may answer in (:func:`load_groups`), and writes what it
observes in batches (:func:`apply`): state changes become the ``account_status`` row and one
``account_event`` each; timeline-only events and counter increments ride along, and the
batch's messages received and replies sent are added to the fleet's traffic of the minute
(``traffic_minute``). A reply sent is a ``reply`` event carrying its text
(:func:`reply_event`). Groups the
client finds are recorded disabled (:func:`record_groups`: replies are opt-in); a group
error switches a group off (:func:`disable_group`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.group_repository import AccountGroupRepository
from tgfleet.account.repository import (
    AccountEventRepository,
    AccountRepository,
    AccountStatusRepository,
)
from tgfleet.account.schemas import HELD_STATES, LIVE_STATES
from tgfleet.account.service import announce_events
from tgfleet.account.traffic_repository import TrafficRepository
from tgfleet.kit.clock import utcnow
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.models import AccountEvent, AccountGroup, AccountState, AccountStatus, DesiredState

#: The length of an event's ``message`` column: longer texts are cut to it.
MESSAGE_MAX: Final = 500
#: The kind of the timeline event a sent reply is recorded as.
REPLY: Final = "reply"

#: The transitions DESIGN §4 allows (any state may also go to quarantined or error).
TRANSITIONS: Final[Mapping[AccountState, frozenset[AccountState]]] = {
    AccountState.STOPPED: frozenset({AccountState.STARTING, AccountState.UNASSIGNED}),
    AccountState.UNASSIGNED: frozenset({AccountState.STARTING, AccountState.STOPPED}),
    AccountState.STARTING: frozenset(
        {
            AccountState.ONLINE,
            AccountState.RECONNECTING,
            AccountState.FLOOD_WAIT,
            AccountState.STOPPING,
        }
    ),
    AccountState.ONLINE: frozenset(
        {AccountState.RECONNECTING, AccountState.FLOOD_WAIT, AccountState.STOPPING}
    ),
    AccountState.RECONNECTING: frozenset(
        {AccountState.ONLINE, AccountState.FLOOD_WAIT, AccountState.STOPPING}
    ),
    AccountState.FLOOD_WAIT: frozenset(
        {AccountState.ONLINE, AccountState.RECONNECTING, AccountState.STOPPING}
    ),
    AccountState.STOPPING: frozenset({AccountState.STOPPED}),
    AccountState.QUARANTINED: frozenset({AccountState.STARTING, AccountState.STOPPED}),
    AccountState.ERROR: frozenset({AccountState.STARTING, AccountState.STOPPED}),
}


def allowed(previous: AccountState, state: AccountState) -> bool:
    """Whether ``previous -> state`` is a transition of the state machine."""
    if state in HELD_STATES:
        return previous != state
    return state in TRANSITIONS.get(previous, frozenset())


@dataclass(frozen=True, slots=True)
class DesiredAccount:
    """One account as the worker needs it: what the operator wants, what was last seen."""

    id: uuid.UUID
    label: str
    username: str | None
    tg_user_id: int | None
    desired_state: DesiredState
    restart_seq: int
    observed_state: AccountState
    observed_restart_seq: int
    observed_secret_version: int | None
    worker_id: str | None


@dataclass(frozen=True, slots=True)
class StateChange:
    account_id: uuid.UUID
    state: AccountState
    previous: AccountState
    at: datetime
    worker_id: str | None
    reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    wait_until: datetime | None = None
    restart_seq: int | None = None
    secret_version: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The worker reporting it. A worker letting an account go (stopping, stopped) never
    #: overwrites the status another worker now holds it with (after a take-over).
    source: str | None = None


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """A timeline entry that is not a state change (an error, a fallback, a group...)."""

    account_id: uuid.UUID
    at: datetime
    kind: str
    code: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Counters:
    messages_received: int = 0
    replies_sent: int = 0
    replies_suppressed: int = 0
    reconnects: int = 0

    def __bool__(self) -> bool:
        return bool(
            self.messages_received
            or self.replies_sent
            or self.replies_suppressed
            or self.reconnects
        )


@dataclass(frozen=True, slots=True)
class GroupSetting:
    chat_id: int
    title: str | None
    enabled: bool
    playbook_id: uuid.UUID | None
    playbook_version: int | None


def minute_of(moment: datetime) -> datetime:
    """The UTC minute ``moment`` falls in (its start): the key of the traffic table."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def reply_event(
    account_id: uuid.UUID,
    text: str,
    *,
    source: str,
    chat_id: int,
    chat_title: str | None,
    reply_to: int | None,
    playbook_id: uuid.UUID | None,
    playbook_version: int | None,
    rule: str | None,
    keep_text: bool = True,
) -> TimelineEvent:
    """The timeline event of one reply sent: its text in ``message`` (cut to the column's
    500 characters, ``details.truncated`` then true; none at all when ``keep_text`` is
    false, i.e. ``TGFLEET_REPLY_TEXT_RETENTION_DAYS=0``), ``code`` how it was made
    (``template``, ``llm``, ``fallback``), and in ``details`` the group, the message it
    answered and the playbook rule that made it. Reply texts are the operator's content,
    never a secret; the housekeeping blanks them after their retention."""
    return TimelineEvent(
        account_id=account_id,
        at=utcnow(),
        kind=REPLY,
        code=source,
        message=text[:MESSAGE_MAX] if keep_text else None,
        details={
            "chat_id": chat_id,
            "chat_title": chat_title,
            "reply_to": reply_to,
            "playbook_id": str(playbook_id) if playbook_id is not None else None,
            "playbook_version": playbook_version,
            "rule": rule,
            "length": len(text),
            "truncated": keep_text and len(text) > MESSAGE_MAX,
        },
    )


async def load_desired(
    session: AsyncSession, only: Collection[uuid.UUID] | None = None
) -> list[DesiredAccount]:
    """Every account (or those in ``only``: a worker's leased ones) with its desired state
    and last observed status, in one query."""
    rows = await AccountRepository(session).desired(only)
    return [
        DesiredAccount(
            id=account.id,
            label=account.label,
            username=account.username,
            tg_user_id=account.tg_user_id,
            desired_state=account.desired_state,
            restart_seq=account.restart_seq,
            observed_state=status.state if status else AccountState.STOPPED,
            observed_restart_seq=status.restart_seq if status else 0,
            observed_secret_version=status.secret_version if status else None,
            worker_id=status.worker_id if status else None,
        )
        for account, status in rows
    ]


async def desired_fingerprint(
    session: AsyncSession, only: Collection[uuid.UUID] | None = None
) -> tuple[object, ...]:
    """Changes whenever :func:`load_desired` could answer differently because of an
    operator (an account added, removed, started, stopped, restarted). One aggregate
    query: a worker polls this and reloads everything only when it moves.

    The worker's own status writes do not move it. On SQLite writers are serialised, so a
    later commit never carries an older ``updated_at``; on PostgreSQL a worker also
    reloads on a timer (and commands arrive by notification, issue 6).
    """
    return await AccountRepository(session).fingerprint(only)


async def groups_fingerprint(session: AsyncSession) -> tuple[object, ...]:
    """Changes whenever a group setting is added, removed or edited."""
    return await AccountGroupRepository(session).fingerprint()


async def load_groups(
    session: AsyncSession, account_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[int, GroupSetting]]:
    """The group settings of these accounts: account -> chat id -> setting."""
    groups: dict[uuid.UUID, dict[int, GroupSetting]] = {a: {} for a in account_ids}
    for row in await AccountGroupRepository(session).for_accounts(account_ids):
        groups.setdefault(row.account_id, {})[row.chat_id] = GroupSetting(
            chat_id=row.chat_id,
            title=row.title,
            enabled=row.enabled,
            playbook_id=row.playbook_id,
            playbook_version=row.playbook_version,
        )
    return groups


async def apply(
    session: AsyncSession,
    changes: Sequence[StateChange],
    events: Sequence[TimelineEvent] = (),
    counters: Mapping[uuid.UUID, Counters] | None = None,
    *,
    lease_holder: str | None = None,
) -> None:
    """Record a batch of observations in the caller's unit of work.

    Each state change updates (or creates) the account's status row and appends a
    ``state`` event; ``events`` are appended as they are; ``counters`` are added to the
    status rows. Accounts deleted meanwhile are skipped.

    The status row tells who runs the account, so two rules keep a slow worker's late
    batch from overwriting the next holder's truth: a worker's goodbye (stopping,
    stopped) applies only to a row that is still its own; and with ``lease_holder`` (the
    reporting worker under PostgreSQL leases) any other state applies only while that worker
    holds the account's lease. Changes left out this way are not lost history: the
    holder's own changes and events carry on.
    """
    counters = counters or {}
    touched = {c.account_id for c in changes} | set(counters) | {e.account_id for e in events}
    if not touched:
        return
    existing = await AccountRepository(session).existing_ids(list(touched))
    statuses = AccountStatusRepository(session)
    rows = {s.account_id: s for s in await statuses.for_accounts(existing, lock=True)}
    leased: set[uuid.UUID] = set()
    if lease_holder is not None and changes:
        leased = await lease_service.leased_by(
            session, lease_holder, {c.account_id for c in changes}
        )
    timeline: list[AccountEvent] = []
    for change in changes:
        if change.account_id not in existing:
            continue
        row = rows.get(change.account_id)
        goodbye = change.state in {AccountState.STOPPING, AccountState.STOPPED}
        if (
            goodbye
            and row is not None
            and change.source is not None
            and row.worker_id != change.source
        ):
            # The row is not this worker's any more (another runs it, or it was marked
            # unassigned meanwhile): this worker's goodbye changes nothing.
            continue
        if (
            not goodbye
            and lease_holder is not None
            and change.source == lease_holder
            and change.account_id not in leased
        ):
            # Reported before the lease went to another worker, written after: stale.
            continue
        if row is None:
            row = AccountStatus(
                account_id=change.account_id,
                restart_seq=0,
                messages_received=0,
                replies_sent=0,
                replies_suppressed=0,
                reconnects=0,
            )
            session.add(row)
            rows[change.account_id] = row
        row.state = change.state
        row.since = change.at
        row.reason = change.reason
        row.worker_id = change.worker_id
        row.wait_until = change.wait_until
        if change.error_code is not None:
            row.last_error_code = change.error_code
            row.last_error_message = (change.error_message or "")[:MESSAGE_MAX]
            row.last_error_at = change.at
        if change.restart_seq is not None:
            row.restart_seq = change.restart_seq
        if change.secret_version is not None:
            row.secret_version = change.secret_version
        row.updated_at = change.at
        timeline.append(
            AccountEvent(
                account_id=change.account_id,
                at=change.at,
                kind="state",
                state=change.state,
                previous_state=change.previous,
                code=change.error_code or change.reason,
                message=(change.error_message or None) and change.error_message[:MESSAGE_MAX],
                details=dict(change.details),
            )
        )
    received, sent = _add_counters(rows, counters)
    if received or sent:
        # Last in the batch: the one row every worker writes is locked for the shortest time.
        await TrafficRepository(session).add_counts(
            minute_of(utcnow()), received=received, sent=sent
        )
    timeline.extend(
        AccountEvent(
            account_id=event.account_id,
            at=event.at,
            kind=event.kind,
            code=event.code,
            message=event.message[:MESSAGE_MAX] if event.message else None,
            details=dict(event.details),
        )
        for event in events
        if event.account_id in existing
    )
    await AccountEventRepository(session).add_events(timeline)
    await announce_events(session, timeline)
    await session.flush()


def _add_counters(
    rows: Mapping[uuid.UUID, AccountStatus], counters: Mapping[uuid.UUID, Counters]
) -> tuple[int, int]:
    """Add the deltas to the status rows there are; the messages received and replies sent
    added (the batch's traffic)."""
    received = sent = 0
    for account_id, delta in counters.items():
        row = rows.get(account_id)
        if row is None or not delta:
            continue
        row.messages_received = (row.messages_received or 0) + delta.messages_received
        row.replies_sent = (row.replies_sent or 0) + delta.replies_sent
        row.replies_suppressed = (row.replies_suppressed or 0) + delta.replies_suppressed
        row.reconnects = (row.reconnects or 0) + delta.reconnects
        received += delta.messages_received
        sent += delta.replies_sent
    return received, sent


async def record_identities(
    session: AsyncSession, identities: Mapping[uuid.UUID, tuple[int, str | None]]
) -> None:
    """Store each account's Telegram user id and username as its client reported them."""
    await AccountRepository(session).set_identities(identities)


async def learn_identity(
    session: AsyncSession, account_id: uuid.UUID, tg_user_id: int, username: str | None
) -> None:
    """Store who an account turned out to be at its connect, and tell every worker (on
    commit) before the account may send anything: no worker then answers its messages.
    Every reply admission on PostgreSQL also reads the stored ids, so a worker that missed
    the notification still never answers a fleet account."""
    await AccountRepository(session).set_identities({account_id: (tg_user_id, username)})
    await notify.workers(session, notify.FLEET_CHANGED)


async def fleet_user_ids(session: AsyncSession) -> set[int]:
    """The Telegram user ids of every account of the fleet (all of them, not one worker's)."""
    return await AccountRepository(session).user_ids()


async def fleet_ids_fingerprint(session: AsyncSession) -> tuple[object, ...]:
    """Moves whenever :func:`fleet_user_ids` could answer differently (one aggregate)."""
    return await AccountRepository(session).user_ids_fingerprint()


async def release_stale(session: AsyncSession, worker_id: str) -> int:
    """After a restart, statuses this worker left in a live state are stale: mark them
    stopped (with an event) so the reconcile starts from the truth. Quarantined and error
    states are kept: only an operator lifts them."""
    at = utcnow()
    stale = await AccountStatusRepository(session).live_of_worker(worker_id, LIVE_STATES)
    await apply(
        session,
        [
            StateChange(
                account_id=row.account_id,
                state=AccountState.STOPPED,
                previous=row.state,
                at=at,
                worker_id=None,
                reason="worker_restarted",
            )
            for row in stale
        ],
    )
    return len(stale)


async def record_groups(
    session: AsyncSession, account_id: uuid.UUID, found: Mapping[int, str | None]
) -> list[int]:
    """Record the groups a client found (chat id -> title). New ones are stored disabled
    (opt-in); known ones get their title refreshed. Returns the chat ids that were new."""
    repository = AccountGroupRepository(session)
    known = {row.chat_id: row for row in await repository.of_account(account_id)}
    if not await AccountRepository(session).existing_ids([account_id]):
        return []
    new: list[AccountGroup] = []
    for chat_id, title in found.items():
        row = known.get(chat_id)
        if row is None:
            new.append(
                AccountGroup(account_id=account_id, chat_id=chat_id, title=title, enabled=False)
            )
        elif title and row.title != title:
            row.title = title[:255]
    if new:
        await repository.add_all(new)
    await session.flush()
    return [row.chat_id for row in new]


async def disable_group(
    session: AsyncSession,
    account_id: uuid.UUID,
    chat_id: int,
    *,
    reason: str,
    code: str,
    message: str,
) -> bool:
    """Switch replies off in one group after a group error, with an event. Returns whether
    a setting was changed."""
    at = utcnow()
    changed = await AccountGroupRepository(session).disable(
        account_id, chat_id, reason=reason, at=at
    )
    await apply(
        session,
        [],
        [
            TimelineEvent(
                account_id=account_id,
                at=at,
                kind="group_disabled",
                code=code,
                message=message,
                details={"chat_id": chat_id, "reason": reason},
            )
        ],
    )
    return changed
