from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AfterValidator, Field

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


@dataclass(frozen=True, slots=True)
class AccountFilter:
    """Which accounts a listing or a bulk command covers.

    ``states`` match the observed state (no status row counts as ``stopped``); ``label`` is a
    case-insensitive prefix of the label; ``q`` a case-insensitive substring of the label,
    username or phone. ``everything`` must be set to cover the whole fleet with an
    otherwise empty filter.
    """

    states: tuple[str, ...] = ()
    label: str | None = None
    q: str | None = None
    everything: bool = False

    @property
    def names_a_field(self) -> bool:
        return bool(self.states) or bool(self.label) or bool(self.q)

    def describe(self) -> dict[str, Any]:
        """The filter as audit details (only the fields given)."""
        described: dict[str, Any] = {}
        if self.states:
            described["state"] = list(self.states)
        if self.label:
            described["label"] = self.label
        if self.q:
            described["q"] = self.q
        if self.everything:
            described["all"] = True
        return described


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


class AccountFilterBody(RequestSchema):
    """Select accounts by observed state, label prefix and text. ``{}`` is refused; say
    ``{"all": true}`` (and nothing else) to mean every account."""

    state: Annotated[list[AccountState] | None, Field(min_length=1)] = None
    label: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    q: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    all: bool = Field(default=False, description="every account; only on its own")

    def to_filter(self) -> AccountFilter:
        return AccountFilter(
            states=tuple(s.value for s in self.state or ()),
            label=self.label,
            q=self.q,
            everything=self.all,
        )


BulkIds = Annotated[list[uuid.UUID] | None, Field(min_length=1, max_length=BULK_MAX_IDS)]


class AccountBulkCommand(RequestSchema):
    ids: BulkIds = None
    filter: AccountFilterBody | None = None
    action: ControlAction


class BulkResultRead(Schema):
    action: ControlAction
    matched: int = Field(description="accounts the ids or the filter selected")
    changed: int = Field(description="accounts whose desired state or restart_seq changed")


class AccountEventRead(Schema):
    id: int
    at: datetime
    kind: str
    state: str | None
    previous_state: str | None
    code: str | None
    message: str | None
    details: dict[str, Any]


ChatId = Annotated[int, Field(ge=CHAT_ID_MIN, le=CHAT_ID_MAX)]


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
        default=None, description="null leaves each group's playbook as it is"
    )
    playbook_version: Annotated[int | None, Field(ge=1, le=INT32_MAX)] = None
    create: bool = Field(default=False, description="add the chat_ids an account lacks")


class GroupBulkResultRead(Schema):
    matched: int = Field(description="accounts the ids or the filter selected")
    groups: int = Field(description="group rows written (created ones included)")
    created: int
