"""Playbook services: versioned YAML documents, validated before anything is written.

Compiling a large playbook takes seconds of CPU (a few thousand templates). The API
compiles it (``check``) before the request's transaction opens and hands the result to
``create``/``update``, so no transaction, and on SQLite no write lock, is held meanwhile;
the dry run reads the stored source in a short read-only transaction and compiles after it.

Every save is a new version and ``latest_version`` advances; versions are never changed.
Saving a source identical to the latest version is refused (409 ``playbook_unchanged``)
unless only the description changes, which updates the playbook without a new version.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import isoformat, utcnow
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.lease import notify
from tgfleet.logging import get_logger
from tgfleet.models import Playbook, PlaybookVersion
from tgfleet.playbook.compiler import CompiledPlaybook, compile_playbook
from tgfleet.playbook.engine import ReplyEngine
from tgfleet.playbook.exceptions import (
    PlaybookInUse,
    PlaybookInvalid,
    PlaybookNameTaken,
    PlaybookNotFound,
    PlaybookUnchanged,
    PlaybookVersionNotFound,
)
from tgfleet.playbook.llm import LlmConfig
from tgfleet.playbook.message import AccountInfo, Message
from tgfleet.playbook.outcome import Outcome
from tgfleet.playbook.repository import PlaybookRepository, PlaybookVersionRepository
from tgfleet.playbook.schemas import DryRunRead, DryRunRequest, LimitsRead

log = get_logger(__name__)

NAME_MAX = 100
DESCRIPTION_MAX = 2000
COMPILED_CACHE_SIZE = 512

Order = Literal["name", "newest"]


def clean_name(raw: str) -> str:
    name = raw.strip()
    if not name or len(name) > NAME_MAX or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        msg = f"name: 1 to {NAME_MAX} printable characters"
        raise PlaybookInvalid([msg])
    return name


async def validate(source: str, *, name: str = "", version: int = 0) -> CompiledPlaybook:
    """Compile ``source`` off the event loop (a large playbook compiles many templates)."""
    return await asyncio.to_thread(compile_playbook, source, name=name, version=version)


@dataclass(frozen=True, slots=True)
class CheckedSource:
    """A source that compiles, checked by ``check`` (outside any transaction)."""

    text: str
    rules: int


async def check(source: str) -> CheckedSource:
    """Validate ``source`` (off the event loop); raises ``PlaybookInvalid`` (422). Call it
    before the unit of work that saves the source opens, then pass the result on."""
    compiled = await validate(source)
    return CheckedSource(text=source, rules=len(compiled.rules))


async def _checked(source: str | CheckedSource) -> CheckedSource:
    return source if isinstance(source, CheckedSource) else await check(source)


# --- Lookups the account domain and the worker use ------------------------------------------


async def ensure_version(
    session: AsyncSession, playbook_id: uuid.UUID, version: int | None
) -> None:
    """Check that the playbook exists and, when ``version`` is given, that it has that
    version. Raises ``PlaybookNotFound`` or ``PlaybookVersionNotFound`` (both 404)."""
    playbook = await get(session, playbook_id)
    if version is not None and not 1 <= version <= playbook.latest_version:
        msg = (
            f"playbook {playbook.name!r} has no version {version} "
            f"(versions 1 to {playbook.latest_version} exist)"
        )
        raise PlaybookVersionNotFound(msg)


async def fingerprint(session: AsyncSession) -> tuple[object, ...]:
    """Changes whenever a playbook is created, saved (a new version) or deleted: the
    worker reloads its playbooks only then."""
    return await PlaybookRepository(session).fingerprint()


async def latest_versions(
    session: AsyncSession, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The latest version of each playbook that exists (missing ids are left out)."""
    return await PlaybookRepository(session).latest_versions(ids)


async def names(session: AsyncSession, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The name of each playbook that exists (missing ids are left out)."""
    return {
        playbook.id: playbook.name for playbook in await PlaybookRepository(session).by_ids(ids)
    }


_compiled: OrderedDict[tuple[uuid.UUID, int], CompiledPlaybook] = OrderedDict()


async def load_compiled(
    session: AsyncSession, refs: Collection[tuple[uuid.UUID, int]]
) -> dict[tuple[uuid.UUID, int], CompiledPlaybook]:
    """Compiled playbooks for ``(id, version)`` pairs, from a process-wide LRU cache
    (versions never change). Pairs that do not exist, or whose stored source no longer
    compiles (logged as ``playbook.compile_failed``), are left out of the result."""
    found: dict[tuple[uuid.UUID, int], CompiledPlaybook] = {}
    missing: list[tuple[uuid.UUID, int]] = []
    for ref in set(refs):
        cached = _compiled.get(ref)
        if cached is None:
            missing.append(ref)
        else:
            _compiled.move_to_end(ref)
            found[ref] = cached
    if not missing:
        return found
    versions = await PlaybookVersionRepository(session).many(missing)
    names = {
        playbook.id: playbook.name
        for playbook in await PlaybookRepository(session).by_ids({pid for pid, _ in missing})
    }
    for row in versions:
        ref = (row.playbook_id, row.version)
        try:
            compiled = await validate(
                row.source, name=names.get(row.playbook_id, ""), version=row.version
            )
        except PlaybookInvalid as exc:
            log.error(  # noqa: TRY400 - an expected failure; the problems say it all
                "playbook.compile_failed",
                playbook_id=str(row.playbook_id),
                version=row.version,
                problems=exc.problems[:5],
            )
            continue
        _remember(ref, compiled)
        found[ref] = compiled
    return found


def _remember(ref: tuple[uuid.UUID, int], compiled: CompiledPlaybook) -> None:
    _compiled[ref] = compiled
    while len(_compiled) > COMPILED_CACHE_SIZE:
        _compiled.popitem(last=False)


# --- CRUD -------------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    context: AuditContext,
    *,
    name: str,
    source: str | CheckedSource,
    description: str = "",
) -> Playbook:
    """Create a playbook with version 1. The source is validated before anything is
    written (pass a ``CheckedSource`` to have it validated before the transaction)."""
    name = clean_name(name)
    checked = await _checked(source)
    repository = PlaybookRepository(session)
    if await repository.by_name(name) is not None:
        raise PlaybookNameTaken(f"a playbook named {name!r} already exists")
    playbook = Playbook(
        id=uuid.uuid4(), name=name, description=description.strip(), latest_version=1
    )
    try:
        await repository.add(playbook)
    except IntegrityError as exc:  # a concurrent create with the same name won
        raise PlaybookNameTaken(f"a playbook named {name!r} already exists") from exc
    await PlaybookVersionRepository(session).add(
        PlaybookVersion(
            playbook_id=playbook.id, version=1, source=checked.text, created_by=context.actor
        )
    )
    await audit_service.record(
        session,
        context,
        action="playbook.create",
        target=f"playbook:{playbook.id}",
        details={"name": name, "version": 1, "rules": checked.rules},
    )
    await notify.workers(session)
    return playbook


async def update(
    session: AsyncSession,
    context: AuditContext,
    playbook_id: uuid.UUID,
    *,
    source: str | CheckedSource,
    description: str | None = None,
) -> Playbook:
    """Save ``source`` as the next version (409 ``playbook_unchanged`` when it is the same
    as the latest and the description does not change either)."""
    checked = await _checked(source)  # before the row lock: no lock held while compiling
    source = checked.text
    repository = PlaybookRepository(session)
    playbook = await repository.get_for_update(playbook_id)
    if playbook is None:
        raise PlaybookNotFound(f"no playbook with id {playbook_id}")
    versions = PlaybookVersionRepository(session)
    latest = await versions.one(playbook.id, playbook.latest_version)
    new_description = description.strip() if description is not None else None
    describes_anew = new_description is not None and new_description != playbook.description
    if latest is not None and latest.source == source:
        if not describes_anew:
            msg = f"the source is the same as version {playbook.latest_version}; nothing to save"
            raise PlaybookUnchanged(msg)
        playbook.description = new_description or ""
        playbook.updated_at = utcnow()
        await session.flush()
        await _audit_update(session, context, playbook, description=True)
        return playbook
    playbook.latest_version += 1
    if new_description is not None:
        playbook.description = new_description
    playbook.updated_at = utcnow()
    await versions.add(
        PlaybookVersion(
            playbook_id=playbook.id,
            version=playbook.latest_version,
            source=source,
            created_by=context.actor,
        )
    )
    await _audit_update(session, context, playbook, rules=checked.rules)
    await notify.workers(session)
    return playbook


async def _audit_update(
    session: AsyncSession, context: AuditContext, playbook: Playbook, **change: object
) -> None:
    """Audit an update: the playbook's name and latest version, then what changed."""
    details = {"name": playbook.name, "version": playbook.latest_version, **change}
    await audit_service.record(
        session,
        context,
        action="playbook.update",
        target=f"playbook:{playbook.id}",
        details=details,
    )


async def delete(session: AsyncSession, context: AuditContext, playbook_id: uuid.UUID) -> None:
    """Delete a playbook and its versions; refused (409) while account groups use it."""
    repository = PlaybookRepository(session)
    playbook = await get(session, playbook_id)
    in_use = await repository.groups_using(playbook.id)
    if in_use:
        raise PlaybookInUse(_in_use_message(playbook.name, in_use))
    try:
        await repository.delete(playbook)
    except IntegrityError as exc:  # a group was assigned to it meanwhile
        raise PlaybookInUse(_in_use_message(playbook.name, None)) from exc
    _forget(playbook.id)
    await audit_service.record(
        session,
        context,
        action="playbook.delete",
        target=f"playbook:{playbook.id}",
        details={"name": playbook.name, "versions": playbook.latest_version},
    )
    await notify.workers(session)


def _in_use_message(name: str, count: int | None) -> str:
    groups = (
        "account groups"
        if count is None
        else ("1 account group" if count == 1 else f"{count} account groups")
    )
    return f"playbook {name!r} is used by {groups}; assign them another playbook first"


def _forget(playbook_id: uuid.UUID) -> None:
    for ref in [ref for ref in _compiled if ref[0] == playbook_id]:
        del _compiled[ref]


async def get(session: AsyncSession, playbook_id: uuid.UUID) -> Playbook:
    playbook = await PlaybookRepository(session).get(playbook_id)
    if playbook is None:
        raise PlaybookNotFound(f"no playbook with id {playbook_id}")
    return playbook


async def get_version(
    session: AsyncSession, playbook_id: uuid.UUID, version: int | None = None
) -> PlaybookVersion:
    """One version (the latest when ``version`` is None)."""
    playbook = await get(session, playbook_id)
    wanted = playbook.latest_version if version is None else version
    row = await PlaybookVersionRepository(session).one(playbook.id, wanted)
    if row is None:
        msg = (
            f"playbook {playbook.name!r} has no version {wanted} "
            f"(versions 1 to {playbook.latest_version} exist)"
        )
        raise PlaybookVersionNotFound(msg)
    return row


async def list_playbooks(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int = DEFAULT_LIMIT,
    order: Order = "name",
) -> Slice[Playbook]:
    """Playbooks by name, or newest first; ``cursor`` continues the same order."""
    key = decode_cursor(cursor) or {}
    repository = PlaybookRepository(session)
    if order == "name":
        after = str(key["name"]) if "name" in key else None
        rows = await repository.page_by_name(after=after, limit=limit)
        return slice_rows(rows, limit, lambda row: {"name": row.name})
    before = None
    if "created_at" in key and "id" in key:
        try:
            before = (datetime.fromisoformat(str(key["created_at"])), uuid.UUID(str(key["id"])))
        except ValueError:
            before = None
    rows = await repository.page_newest(before=before, limit=limit)
    return slice_rows(
        rows, limit, lambda row: {"created_at": isoformat(row.created_at), "id": str(row.id)}
    )


async def list_versions(
    session: AsyncSession, playbook_id: uuid.UUID, *, cursor: str | None, limit: int
) -> Slice[PlaybookVersion]:
    """A playbook's versions, newest first."""
    await get(session, playbook_id)
    key = decode_cursor(cursor) or {}
    before = key.get("version") if isinstance(key.get("version"), int) else None
    rows = await PlaybookVersionRepository(session).page(playbook_id, before=before, limit=limit)
    return slice_rows(rows, limit, lambda row: {"version": row.version})


async def create_or_update_by_name(
    session: AsyncSession, context: AuditContext, name: str, source: str, description: str
) -> Playbook:
    """Install a playbook idempotently (the demo's examples): create it, or save a new
    version when ``source`` differs from the latest; the same source changes nothing."""
    existing = await PlaybookRepository(session).by_name(clean_name(name))
    if existing is None:
        return await create(session, context, name=name, source=source, description=description)
    latest = await PlaybookVersionRepository(session).one(existing.id, existing.latest_version)
    if latest is not None and latest.source == source and existing.description == description:
        return existing
    try:
        return await update(session, context, existing.id, source=source, description=description)
    except PlaybookUnchanged:
        return existing


# --- Dry run ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One saved version as read from the database, to compile after the transaction."""

    playbook_id: uuid.UUID
    name: str
    version: int
    source: str


async def stored_version(
    session: AsyncSession, playbook_id: uuid.UUID, version: int | None = None
) -> StoredVersion:
    """One version (the latest by default); 404 when the playbook or the version is missing."""
    row = await get_version(session, playbook_id, version)
    playbook = await get(session, playbook_id)
    return StoredVersion(
        playbook_id=row.playbook_id, name=playbook.name, version=row.version, source=row.source
    )


async def compile_stored(stored: StoredVersion) -> CompiledPlaybook:
    """``stored`` compiled (from the process-wide cache when it is there). A source that no
    longer compiles raises ``PlaybookInvalid`` naming its problems."""
    ref = (stored.playbook_id, stored.version)
    cached = _compiled.get(ref)
    if cached is not None:
        _compiled.move_to_end(ref)
        return cached
    compiled = await validate(stored.source, name=stored.name, version=stored.version)
    _remember(ref, compiled)
    return compiled


async def dry_run(
    engine: ReplyEngine, compiled: CompiledPlaybook, message: Message, account: AccountInfo
) -> Outcome:
    """Evaluate one message without limits, probability or claims (may call the LLM)."""
    return await engine.respond(compiled, message, account, apply_limits=False)


async def dry_run_request(
    llm: LlmConfig | None, compiled: CompiledPlaybook, request: DryRunRequest
) -> DryRunRead:
    """The API's (and the console's) dry run of ``request`` against ``compiled``: the
    message as a worker would see it (a fresh dedupe key, now unless ``at`` is given), an
    engine of its own, and the answer naming the rule, the reply or why nothing is sent."""
    text = request.message
    message = Message(
        text=text.text,
        chat_id=text.chat_id,
        chat_title=text.chat_title,
        message_id=text.message_id,
        sender_id=text.sender_id,
        sender_username=text.sender_username,
        sender_first_name=text.sender_first_name,
        sender_last_name=text.sender_last_name,
        at=text.at or utcnow(),
        dedupe_key=f"dry-run:{uuid.uuid4()}",
        reply_to_account=text.reply_to_account,
        mentions_account=text.mentions_account,
        new_member=text.new_member,
    )
    account = AccountInfo(
        id=None,
        label=request.account.label,
        username=request.account.username,
        first_name=request.account.first_name,
        tg_user_id=None,
    )
    engine = ReplyEngine(llm)
    try:
        outcome = await dry_run(engine, compiled, message, account)
    finally:
        await engine.aclose()
    rule = compiled.rule_named(outcome.rule) if outcome.rule else None
    return DryRunRead(
        version=compiled.version,
        fired=outcome.fired,
        rule=outcome.rule,
        reply=outcome.text,
        source=outcome.source,
        reason=outcome.reason,
        fallback_reason=outcome.fallback_reason,
        typing_seconds=outcome.typing_seconds,
        detail=outcome.detail,
        limits=LimitsRead.model_validate(rule.limits) if rule else None,
        responders=rule.responders if rule else None,
    )
