"""HTTP API for playbooks: versioned YAML reply rules and their dry run.

Saving and the dry run authorise in a short transaction of their own and compile the
playbook after it, before the request's unit of work opens (``DbSession`` is declared after
the dependencies that compile): a playbook of thousands of templates compiles for seconds,
and a dry run may wait for the model, with no transaction open (on SQLite: no write lock).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status

from tgfleet.auth.dependencies import Requires, audit_context
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.http import DbSession, Meta
from tgfleet.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, to_page
from tgfleet.kit.schema import INT32_MAX
from tgfleet.models import Playbook, PlaybookVersion
from tgfleet.playbook import service as playbook_service
from tgfleet.playbook.compiler import CompiledPlaybook
from tgfleet.playbook.llm import LlmConfig
from tgfleet.playbook.schemas import (
    DryRunRead,
    DryRunRequest,
    PlaybookCreate,
    PlaybookDetail,
    PlaybookRead,
    PlaybookUpdate,
    PlaybookVersionRead,
    PlaybookVersionSummary,
)

router = APIRouter(prefix="/api/v1/playbooks", tags=["playbooks"])

Reader = Annotated[Principal, Requires(Permission.PLAYBOOK_READ)]
Writer = Annotated[Principal, Requires(Permission.PLAYBOOK_WRITE)]
#: Authorises in a transaction that ends before the route's work (one instance: cached).
SourceWriter = Annotated[Principal, Requires(Permission.PLAYBOOK_WRITE, own_transaction=True)]
#: The dry run: whoever may read playbooks may try one (it writes nothing), as on the console.
DryRunner = Annotated[Principal, Requires(Permission.PLAYBOOK_READ, own_transaction=True)]


async def _checked_create(
    body: PlaybookCreate, _principal: SourceWriter
) -> playbook_service.CheckedSource:
    return await playbook_service.check(body.source)


async def _checked_update(
    body: PlaybookUpdate, _principal: SourceWriter
) -> playbook_service.CheckedSource:
    return await playbook_service.check(body.source)


async def _dry_run_playbook(
    playbook_id: uuid.UUID,
    body: DryRunRequest,
    _principal: DryRunner,
    components: AppComponents,
) -> CompiledPlaybook:
    async with unit_of_work(components.sessionmaker, read_only=True) as session:
        stored = await playbook_service.stored_version(session, playbook_id, body.version)
    return await playbook_service.compile_stored(stored)


def _detail(playbook: Playbook, latest: PlaybookVersion) -> PlaybookDetail:
    return PlaybookDetail(
        id=playbook.id,
        name=playbook.name,
        description=playbook.description,
        latest_version=playbook.latest_version,
        created_at=playbook.created_at,
        updated_at=playbook.updated_at,
        source=latest.source,
        version_created_by=latest.created_by,
        version_created_at=latest.created_at,
    )


@router.get("", response_model=Page[PlaybookRead])
async def list_playbooks(
    _principal: Reader,
    session: DbSession,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    order: Literal["name", "newest"] = "name",
) -> Page[PlaybookRead]:
    """Playbooks by name (or newest first with ``order=newest``), without their source."""
    result = await playbook_service.list_playbooks(session, cursor=cursor, limit=limit, order=order)
    return to_page(result, PlaybookRead)


@router.post("", response_model=PlaybookDetail, status_code=status.HTTP_201_CREATED)
async def create_playbook(
    body: PlaybookCreate,
    principal: SourceWriter,
    checked: Annotated[playbook_service.CheckedSource, Depends(_checked_create)],
    session: DbSession,
    meta: Meta,
) -> PlaybookDetail:
    """Create a playbook (version 1). An invalid document is a 422 whose detail names the
    line and the field of every problem."""
    playbook = await playbook_service.create(
        session,
        audit_context(principal, meta),
        name=body.name,
        source=checked,
        description=body.description,
    )
    latest = await playbook_service.get_version(session, playbook.id)
    return _detail(playbook, latest)


@router.get("/{playbook_id}", response_model=PlaybookDetail)
async def get_playbook(
    playbook_id: uuid.UUID, _principal: Reader, session: DbSession
) -> PlaybookDetail:
    """One playbook with its latest source."""
    playbook = await playbook_service.get(session, playbook_id)
    latest = await playbook_service.get_version(session, playbook.id)
    return _detail(playbook, latest)


@router.put("/{playbook_id}", response_model=PlaybookDetail)
async def update_playbook(
    playbook_id: uuid.UUID,
    body: PlaybookUpdate,
    principal: SourceWriter,
    checked: Annotated[playbook_service.CheckedSource, Depends(_checked_update)],
    session: DbSession,
    meta: Meta,
) -> PlaybookDetail:
    """Save a new version. Groups that follow the latest version pick it up; pinned
    groups keep theirs. The same source as the latest is a 409 (``playbook_unchanged``)
    unless the description changes."""
    playbook = await playbook_service.update(
        session,
        audit_context(principal, meta),
        playbook_id,
        source=checked,
        description=body.description,
    )
    latest = await playbook_service.get_version(session, playbook.id)
    return _detail(playbook, latest)


@router.delete("/{playbook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_playbook(
    playbook_id: uuid.UUID, principal: Writer, session: DbSession, meta: Meta
) -> Response:
    """Delete a playbook and all its versions; 409 ``playbook_in_use`` while account
    groups use it."""
    await playbook_service.delete(session, audit_context(principal, meta), playbook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{playbook_id}/versions", response_model=Page[PlaybookVersionSummary])
async def list_versions(
    playbook_id: uuid.UUID,
    _principal: Reader,
    session: DbSession,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[PlaybookVersionSummary]:
    """A playbook's versions, newest first (without their source)."""
    result = await playbook_service.list_versions(session, playbook_id, cursor=cursor, limit=limit)
    return to_page(result, PlaybookVersionSummary)


@router.get("/{playbook_id}/versions/{version}", response_model=PlaybookVersionRead)
async def get_version(
    playbook_id: uuid.UUID,
    version: Annotated[int, Path(ge=1, le=INT32_MAX)],
    _principal: Reader,
    session: DbSession,
) -> PlaybookVersionRead:
    """One version with its source, exactly as saved."""
    row = await playbook_service.get_version(session, playbook_id, version)
    return PlaybookVersionRead.model_validate(row)


@router.post("/{playbook_id}/dry-run", response_model=DryRunRead)
async def dry_run(
    body: DryRunRequest,
    compiled: Annotated[CompiledPlaybook, Depends(_dry_run_playbook)],
    components: AppComponents,
) -> DryRunRead:
    """Evaluate one message against a version (the latest by default) as a worker would,
    without rate limits, probability or claims; an LLM rule calls the configured model.
    The response names the rule, the reply and, when nothing would be sent, why. Needs
    ``playbook:read`` only: it writes nothing."""
    return await playbook_service.dry_run_request(
        LlmConfig.from_settings(components.settings), compiled, body
    )
