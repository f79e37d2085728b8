from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, NamedTuple

from pydantic import AfterValidator, ConfigDict, Field

from tgfleet.kit.names import NameRules
from tgfleet.kit.pagination import Page
from tgfleet.kit.schema import INT32_MAX, RequestSchema, Schema
from tgfleet.models import AccountState

#: At most this many ids in one bulk request.
BULK_MAX_IDS = 10_000
#: At most this many chat ids in one group bulk request.
BULK_MAX_CHAT_IDS = 1_000
#: The marked chat id range (Telethon: ``-id`` for a basic group, ``-100id`` for a channel).
CHAT_ID_MIN = -(2**63)
CHAT_ID_MAX = 2**63 - 1
#: The longest group title (its column's length).
GROUP_TITLE_MAX = 255
#: At most this many values of one repeatable filter field (states, workers, groups).
FILTER_MAX_VALUES = 50
#: The longest worker id (its column's length).
WORKER_ID_MAX = 128
#: Accounts a bulk preview (a dry run) names.
PREVIEW_SAMPLE = 20


class ControlAction(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"


#: States only an operator's act leaves: a start or restart (it raises ``restart_seq``), or
#: a re-import of the session (a new secret version).
HELD_STATES: Final = frozenset({AccountState.QUARANTINED, AccountState.ERROR})
#: States a worker holds a client in; after a worker restart they are stale.
LIVE_STATES: Final = frozenset(
    {
        AccountState.STARTING,
        AccountState.ONLINE,
        AccountState.RECONNECTING,
        AccountState.FLOOD_WAIT,
        AccountState.STOPPING,
    }
)


class AccountSort(StrEnum):
    """The orders of an account listing; ``-`` reverses the key. Every order ends with the
    label (unique, ascending), so a page boundary is exact. An account no worker has run
    sorts as ``stopped``, ``since`` its creation, and with the worker ``""`` (before every
    worker id ascending, after them descending), the same on SQLite and PostgreSQL."""

    LABEL = "label"
    LABEL_DESC = "-label"
    STATE = "state"
    STATE_DESC = "-state"
    SINCE = "since"
    SINCE_DESC = "-since"
    WORKER = "worker"
    WORKER_DESC = "-worker"
    CREATED = "created"
    CREATED_DESC = "-created"

    @property
    def key(self) -> str:
        """The sort key without its direction (label, state, since, worker, created)."""
        return self.value.removeprefix("-")

    @property
    def descending(self) -> bool:
        return self.value.startswith("-")


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Which accounts a listing, its counts or a bulk command covers (all fields AND).

    ``states`` match the observed state (no status row counts as ``stopped``); ``id_prefix``
    the first characters of the id (``id_prefix_bounds``); ``label`` is a
    case-insensitive prefix of the label; ``q`` a case-insensitive substring of the label,
    username or phone; ``workers`` the worker named in the status row (the last one that
    reported the account); ``groups`` keeps the accounts with a group row for one of these
    chat ids (whether replies are on or not). ``everything`` must be set to cover the whole
    fleet with an otherwise empty filter.
    """

    states: tuple[str, ...] = ()
    label: str | None = None
    q: str | None = None
    workers: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    everything: bool = False
    id_prefix: str | None = None

    @property
    def names_a_field(self) -> bool:
        return any((self.states, self.label, self.q, self.workers, self.groups, self.id_prefix))

    def describe(self) -> dict[str, Any]:
        """The filter as audit details (only the fields given)."""
        described: dict[str, Any] = {}
        if self.states:
            described["state"] = list(self.states)
        if self.label:
            described["label"] = self.label
        if self.q:
            described["q"] = self.q
        if self.workers:
            described["worker"] = list(self.workers)
        if self.groups:
            described["group"] = list(self.groups)
        if self.id_prefix:
            described["id_prefix"] = self.id_prefix
        if self.everything:
            described["all"] = True
        return described


@dataclass(frozen=True, slots=True)
class MatchPreview:
    """What a bulk action on a selection would touch: how many accounts, and the first
    ``sample`` of them in label order as (id, label, observed state)."""

    count: int
    sample: list[tuple[uuid.UUID, str, str]]


class SessionSummary(Schema):
    """What the API may say about an account's session: never key material."""

    state: str = Field(description="active, tampered (unusable until re-imported) or erased")
    source_format: str
    version: int
    kek_id: str | None
    updated_at: datetime


class AccountStatusRead(Schema):
    """What the worker last observed. ``since`` is null for an account no worker has run."""

    state: str
    since: datetime | None = None
    reason: str | None = None
    worker_id: str | None = None
    last_error_code: str | None = None
    last_error_message: str | None = None
    last_error_at: datetime | None = None
    wait_until: datetime | None = None
    messages_received: int = 0
    replies_sent: int = 0
    replies_suppressed: int = 0
    reconnects: int = 0


class AccountRead(Schema):
    id: uuid.UUID
    label: str
    tg_user_id: int | None
    username: str | None
    dc_id: int | None
    desired_state: str
    restart_seq: int = Field(
        description="grows with every operator start out of quarantine "
        "or error, and with every restart"
    )
    created_at: datetime
    updated_at: datetime
    status: AccountStatusRead
    holder: str | None = Field(
        default=None,
        description="the worker whose valid lease runs this account (PostgreSQL; null on "
        "SQLite, where the one process runs every account, and when no worker holds it)",
    )
    session: SessionSummary | None = None


class AccountPage(Page[AccountRead]):
    counts: dict[str, int] = Field(
        description="accounts per observed state over the label and q filters (state ignored)"
    )


ChatId = Annotated[int, Field(ge=CHAT_ID_MIN, le=CHAT_ID_MAX)]
WorkerId = Annotated[str, Field(min_length=1, max_length=WORKER_ID_MAX)]


def _marked_chat_id(chat_id: int) -> int:
    if chat_id == 0:
        msg = "0 is not a marked Telegram chat id (a non-zero 64-bit integer)"
        raise ValueError(msg)
    return chat_id


#: A chat id a filter names: a marked, non-zero 64-bit id.
GroupChatId = Annotated[ChatId, AfterValidator(_marked_chat_id)]


#: The shortest and longest id prefix a listing takes (a whole id is 36 characters).
ID_PREFIX_MIN = 6
ID_PREFIX_MAX = 36
#: Where the dashes are in an id's canonical text (8-4-4-4-12 hex digits).
_DASHES: Final = frozenset({8, 13, 18, 23})


def _id_prefix(value: str) -> str:
    """The first characters of an id's canonical text (hex, dashes where the id has them),
    lower-cased; anything else is refused (it could match no id)."""
    text = value.lower()
    for position, char in enumerate(text):
        wanted = "-" if position in _DASHES else "0123456789abcdef"
        if char not in wanted:
            msg = (
                "an id prefix is the start of an id like 1a6f7b97-63d0-43b1-...: "
                "hex digits, dashes where the id has them"
            )
            raise ValueError(msg)
    return text


#: An id prefix a listing takes.
IdPrefix = Annotated[
    str,
    Field(min_length=ID_PREFIX_MIN, max_length=ID_PREFIX_MAX),
    AfterValidator(_id_prefix),
]


def id_prefix_bounds(prefix: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The lowest and highest id starting with ``prefix`` (a valid `_id_prefix`): the ids
    in between, ends included, are those it names. A range on the key, not text: the
    column is CHAR(32) hex on SQLite and a native uuid on PostgreSQL, and both order ids
    as their hex digits."""
    digits = prefix.replace("-", "")
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def _values(description: str) -> Any:
    """A repeatable filter field: at least one value, at most ``FILTER_MAX_VALUES``."""
    return Field(min_length=1, max_length=FILTER_MAX_VALUES, description=description)


class AccountQuery(RequestSchema):
    """The listing's filters and order as URL query parameters: ``GET /api/v1/accounts``
    takes them, and a page that keeps them in its URL parses them with the same rules
    (``from_pairs``). Other parameters (``cursor``, ``limit``...) are left to the caller."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    state: list[AccountState] = Field(
        default_factory=list, max_length=FILTER_MAX_VALUES, description="observed state"
    )
    label: str | None = Field(default=None, max_length=200, description="label prefix")
    q: str | None = Field(
        default=None, max_length=200, description="part of the label, username or phone"
    )
    worker: list[WorkerId] = Field(
        default_factory=list,
        max_length=FILTER_MAX_VALUES,
        description="the worker in the status row (the last that reported the account)",
    )
    group: list[GroupChatId] = Field(
        default_factory=list,
        max_length=FILTER_MAX_VALUES,
        description="accounts with a group row for this chat id",
    )
    sort: AccountSort = Field(
        default=AccountSort.LABEL,
        description="label, state, since, worker or created; '-' first reverses",
    )
    id_prefix: IdPrefix | None = Field(
        default=None,
        description=f"the first {ID_PREFIX_MIN} to {ID_PREFIX_MAX} characters of the id "
        "(hex digits, dashes where the id has them)",
    )

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> AccountQuery:
        """Parse URL query pairs (``request.query_params.multi_items()``); the repeatable
        ones (state, worker, group) collect every value. Raises pydantic's
        ``ValidationError`` on what the API answers 422 to."""
        values: dict[str, Any] = {}
        for name, value in pairs:
            if name in _REPEATED:
                values.setdefault(name, []).append(value)
            elif name in cls.model_fields:
                values[name] = value
        return cls.model_validate(values)

    def to_filter(self) -> AccountFilter:
        """The filter these parameters select (an empty ``label`` or ``q`` is no filter)."""
        return AccountFilter(
            states=tuple(dict.fromkeys(s.value for s in self.state)),
            label=self.label or None,
            q=self.q or None,
            workers=tuple(dict.fromkeys(self.worker)),
            groups=tuple(dict.fromkeys(self.group)),
            id_prefix=self.id_prefix or None,
        )


_REPEATED: Final = frozenset({"state", "worker", "group"})


class AccountFilterBody(RequestSchema):
    """Select accounts by observed state, label prefix, text, worker and group (all must
    hold; within a list any value). ``{}`` is refused; say ``{"all": true}`` (and nothing
    else) to mean every account."""

    state: Annotated[list[AccountState] | None, _values("the observed state")] = None
    label: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    q: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    worker: Annotated[
        list[WorkerId] | None,
        _values("the worker in the status row (the last that reported the account)"),
    ] = None
    group: Annotated[
        list[GroupChatId] | None, _values("accounts with a group row for one of these chat ids")
    ] = None
    all: bool = Field(default=False, description="every account; only on its own")

    def to_filter(self) -> AccountFilter:
        return AccountFilter(
            states=tuple(s.value for s in self.state or ()),
            label=self.label,
            q=self.q,
            workers=tuple(dict.fromkeys(self.worker or ())),
            groups=tuple(dict.fromkeys(self.group or ())),
            everything=self.all,
        )


BulkIds = Annotated[list[uuid.UUID] | None, Field(min_length=1, max_length=BULK_MAX_IDS)]


class AccountBulkCommand(RequestSchema):
    ids: BulkIds = None
    filter: AccountFilterBody | None = None
    action: ControlAction
    dry_run: bool = Field(
        default=False,
        description="only count and name what would be touched; changes and audits nothing",
    )


class AccountMatchRead(Schema):
    id: uuid.UUID
    label: str
    state: str = Field(description="the observed state (stopped when no worker ran it)")


class BulkResultRead(Schema):
    action: ControlAction
    matched: int = Field(description="accounts the ids or the filter selected")
    changed: int = Field(
        description="accounts whose desired state or restart_seq changed (0 on a dry run)"
    )
    dry_run: bool = False
    sample: list[AccountMatchRead] | None = Field(
        default=None,
        description=f"on a dry run, the first {PREVIEW_SAMPLE} matched accounts by label",
    )


class AccountEventRead(Schema):
    id: int
    at: datetime
    kind: str
    state: str | None
    previous_state: str | None
    code: str | None
    message: str | None
    details: dict[str, Any]


class AccountGroupRead(Schema):
    account_id: uuid.UUID
    chat_id: int
    title: str | None
    enabled: bool
    playbook_id: uuid.UUID | None
    playbook_version: int | None = Field(description="a pinned version; null follows latest")
    disabled_reason: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


#: A group title an operator sets: shown as is, so nothing invisible or bidi.
GroupTitle = Annotated[
    str,
    Field(min_length=1, max_length=GROUP_TITLE_MAX),
    AfterValidator(NameRules(GROUP_TITLE_MAX, "title")),
]


class AccountGroupUpdate(RequestSchema):
    enabled: bool
    playbook_id: uuid.UUID | None = None
    playbook_version: Annotated[int | None, Field(ge=1, le=INT32_MAX)] = None
    title: GroupTitle | None = Field(default=None, description="null keeps the current title")


class GroupBulkUpdate(RequestSchema):
    ids: BulkIds = None
    filter: AccountFilterBody | None = None
    chat_ids: Annotated[list[ChatId] | None, Field(min_length=1, max_length=BULK_MAX_CHAT_IDS)] = (
        None
    )
    all_groups: bool = False
    enabled: bool
    playbook_id: uuid.UUID | None = Field(
        default=None,
        description="null leaves each group's playbook as it is (an enable then "
        "re-enables each group with the playbook it kept)",
    )
    playbook_version: Annotated[int | None, Field(ge=1, le=INT32_MAX)] = None
    create: bool = Field(default=False, description="add the chat_ids an account lacks")
    dry_run: bool = Field(
        default=False,
        description="only count what would be written and name the first accounts; "
        "changes and audits nothing",
    )


class GroupBulkResultRead(Schema):
    matched: int = Field(description="accounts the ids or the filter selected")
    groups: int = Field(
        description="group rows written (created ones included); on a dry run, would be"
    )
    created: int
    dry_run: bool = False
    sample: list[AccountMatchRead] | None = Field(
        default=None,
        description=f"on a dry run, the first {PREVIEW_SAMPLE} matched accounts by label",
    )


class GroupPlaybookRead(Schema):
    id: uuid.UUID
    name: str
    accounts: int = Field(description="accounts (of the filter) set to it in this group")


class GroupRead(Schema):
    """One group (chat) across the fleet, counted over the settings the filters keep."""

    chat_id: int = Field(description="Telethon's marked chat id")
    title: str | None = Field(description="the title an account recorded (the greatest)")
    accounts: int = Field(description="accounts in the group")
    enabled: int = Field(description="accounts with replies on in the group")
    playbooks: list[GroupPlaybookRead] = Field(
        description="the playbooks the accounts are set to here, the most used first"
    )


class GroupQuery(RequestSchema):
    """The fleet-wide group listing's filters (all must hold)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    q: str | None = Field(default=None, max_length=200, description="part of the title, any case")
    enabled: bool | None = Field(
        default=None, description="only settings with replies on (true) or off (false)"
    )
    label: str | None = Field(
        default=None, max_length=200, description="only accounts with this label prefix"
    )


class ChatRow(NamedTuple):
    """One chat across the fleet: its title (the greatest any account recorded), how many
    accounts (of the filter) are in it and how many of those have replies on."""

    chat_id: int
    title: str | None
    accounts: int
    enabled: int


class MemberRow(NamedTuple):
    """One account's settings in one chat, with the account's label."""

    chat_id: int
    account_id: uuid.UUID
    label: str
    enabled: bool
    playbook_id: uuid.UUID | None
    playbook_version: int | None
    disabled_reason: str | None
    disabled_at: datetime | None
    title: str | None


class ReplyCount(NamedTuple):
    account_id: uuid.UUID
    chat_id: int
    replies: int
    last_at: datetime
