from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from tgfleet.kit.names import DisplayName
from tgfleet.kit.schema import INT32_MAX, RequestSchema, Schema

#: Requests may carry a little more than the document limit so that the size error names it.
SOURCE_BODY_MAX = 512 * 1024

#: The YAML is stored exactly as written: no stripping (RequestSchema strips other strings).
Source = Annotated[str, StringConstraints(strip_whitespace=False, max_length=SOURCE_BODY_MAX)]


class PlaybookCreate(RequestSchema):
    name: DisplayName
    description: str = Field(default="", max_length=2000)
    source: Source = Field(description="the YAML document (see docs/playbooks.md)")


class PlaybookUpdate(RequestSchema):
    source: Source = Field(description="the YAML document")
    description: str | None = Field(default=None, max_length=2000)


class PlaybookRead(Schema):
    id: uuid.UUID
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


class PlaybookDetail(PlaybookRead):
    source: str = Field(description="the latest version's YAML, exactly as saved")
    version_created_by: str
    version_created_at: datetime


class PlaybookVersionSummary(Schema):
    playbook_id: uuid.UUID
    version: int
    created_by: str
    created_at: datetime


class PlaybookVersionRead(PlaybookVersionSummary):
    source: str


class DryRunMessage(RequestSchema):
    text: str = Field(default="", max_length=4096)
    chat_id: int = Field(default=-1001000000000, description="Telethon marked chat id")
    chat_title: str = Field(default="Dry run", max_length=255)
    message_id: int = 1
    sender_id: int | None = 1000
    sender_username: str | None = Field(default=None, max_length=64)
    sender_first_name: str = Field(default="Alex", max_length=128)
    sender_last_name: str | None = Field(default=None, max_length=128)
    mentions_account: bool = False
    reply_to_account: bool = False
    new_member: bool = False
    at: AwareDatetime | None = Field(default=None, description="default: now")


class DryRunAccount(RequestSchema):
    label: str = Field(default="dry-run", max_length=200)
    username: str | None = Field(default=None, max_length=64)
    first_name: str | None = Field(default=None, max_length=128)


class DryRunRequest(RequestSchema):
    version: int | None = Field(default=None, ge=1, le=INT32_MAX, description="default: the latest")
    message: DryRunMessage
    account: DryRunAccount = DryRunAccount()


class LimitsRead(Schema):
    min_interval_seconds: float
    account_hourly: int
    group_hourly: int
    probability: float


class DryRunRead(Schema):
    version: int
    fired: bool
    rule: str | None
    reply: str | None
    source: str | None = Field(description="template, llm or fallback")
    reason: str = Field(description="fired, or why not (see docs/playbooks.md)")
    fallback_reason: str | None
    typing_seconds: float
    detail: str | None
    limits: LimitsRead | None = Field(
        description="limits the matched rule would apply in a worker (not applied here)"
    )
    responders: str | None = Field(description="one or all, for the matched rule")
