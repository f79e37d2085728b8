"""What the playbook pages show, from the domains' services (never their repositories): the
playbooks with the groups that use them, one playbook's source with its problems placed on
their lines, its versions, a side-by-side diff of two versions, and a dry run's answer."""

from __future__ import annotations

import asyncio
import difflib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import groups as account_groups
from tgfleet.console.i18n import gettext as _
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AccountGroup
from tgfleet.playbook import service as playbook_service
from tgfleet.playbook.exceptions import PlaybookInvalid, PlaybookNotFound
from tgfleet.playbook.llm import LlmConfig
from tgfleet.playbook.schemas import DryRunRead, DryRunRequest

PLAYBOOKS_PAGE = 50
VERSIONS_PAGE = 50
GROUPS_PAGE = 100
#: Groups named per playbook in the list (the playbook's page lists them all, paged).
GROUPS_LISTED = 5
#: Unchanged lines a diff shows around each change (the rest are folded).
DIFF_CONTEXT = 3

# "line 7, rules[0].reply.templates: at least one template is required" (playbook.document)
_PROBLEM = re.compile(r"line (\d+)(?:, ([^:\n]+?))?: (.*)", re.DOTALL)
#: A time that names its zone (``Z`` or an offset); the panel's own has none and is UTC.
_ZONED = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def parse_id(raw: str) -> uuid.UUID:
    """A playbook id from a URL; anything else is a playbook that does not exist (404)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        msg = _("No playbook with this id: check the link, or find the playbook in the list.")
        raise PlaybookNotFound(msg) from None


# --- Problems on their lines -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem the playbook domain reported, with the line and the field it names (None
    when it names none, as a playbook's name)."""

    line: int | None
    path: str | None
    message: str


def problems_of(error: PlaybookInvalid) -> list[Problem]:
    """The domain's problems (``line N, path: message``) as (line, path, message)."""
    found: list[Problem] = []
    for text in error.problems:
        matched = _PROBLEM.fullmatch(text)
        if matched is None:
            found.append(Problem(line=None, path=None, message=text))
            continue
        found.append(
            Problem(line=int(matched.group(1)), path=matched.group(2), message=matched.group(3))
        )
    return found


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """A source as the editor shows it: its lines and the problems found on them."""

    source: str
    problems: list[Problem]
    #: "save" (a refused save: nothing was written), "check" (the Check button) or "".
    attempt: str = ""

    @property
    def line_count(self) -> int:
        return max(1, self.source.count("\n") + (0 if self.source.endswith("\n") else 1))

    @property
    def bad_lines(self) -> dict[int, str]:
        """The lines with problems, each with its problems' text (the gutter's hint)."""
        lines: dict[int, list[str]] = {}
        for problem in self.problems:
            if problem.line is not None:
                where = f"{problem.path}: " if problem.path else ""
                lines.setdefault(problem.line, []).append(where + problem.message)
        return {line: "\n".join(texts) for line, texts in lines.items()}

    @property
    def valid(self) -> bool:
        return bool(self.attempt) and not self.problems


async def check_source(
    source: str, attempt: str
) -> tuple[SourceCheck, playbook_service.CheckedSource | None]:
    """Compile ``source`` as a save would (off the event loop, no transaction open)."""
    try:
        checked = await playbook_service.check(source)
    except PlaybookInvalid as exc:
        return SourceCheck(source=source, problems=problems_of(exc), attempt=attempt), None
    return SourceCheck(source=source, problems=[], attempt=attempt), checked


#: What a new playbook's editor starts with: one rule, to edit.
STARTER = """\
rules:
  - name: greet
    when:
      keywords: [hello]
    reply:
      templates: ["Hello {{ sender.first_name }}!"]
"""


def starter() -> SourceCheck:
    return SourceCheck(source=STARTER, problems=[])


# --- The list ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupUse:
    """A group set to a playbook: its account, its title, on or off, its pinned version."""

    account_id: uuid.UUID
    account_label: str
    chat_id: int
    title: str | None
    enabled: bool
    pinned: int | None


def _group_use(row: tuple[Account, AccountGroup]) -> GroupUse:
    account, group = row
    return GroupUse(
        account_id=account.id,
        account_label=account.label,
        chat_id=group.chat_id,
        title=group.title,
        enabled=group.enabled,
        pinned=group.playbook_version,
    )


@dataclass(frozen=True, slots=True)
class PlaybookRow:
    id: uuid.UUID
    name: str
    description: str
    latest_version: int
    updated_at: datetime
    groups_count: int
    groups: list[GroupUse]


@dataclass(frozen=True, slots=True)
class PlaybookList:
    rows: list[PlaybookRow]
    cursor: str | None
    next_cursor: str | None
    #: Whether the groups were read (the viewer may read accounts).
    with_groups: bool


async def playbook_list(
    session: AsyncSession, *, cursor: str | None, with_groups: bool
) -> PlaybookList:
    """One page of playbooks by name with their versions and, given ``with_groups``, how
    many groups use each and the first of them."""
    found = await playbook_service.list_playbooks(session, cursor=cursor, limit=PLAYBOOKS_PAGE)
    usage: dict[uuid.UUID, account_groups.PlaybookUsage] = {}
    if with_groups and found.items:
        usage = await account_groups.playbook_usage(
            session, [playbook.id for playbook in found.items], first=GROUPS_LISTED
        )
    rows = []
    for playbook in found.items:
        used = usage.get(playbook.id)
        rows.append(
            PlaybookRow(
                id=playbook.id,
                name=playbook.name,
                description=playbook.description,
                latest_version=playbook.latest_version,
                updated_at=playbook.updated_at,
                groups_count=used.count if used else 0,
                groups=[_group_use(row) for row in used.first] if used else [],
            )
        )
    return PlaybookList(
        rows=rows, cursor=cursor, next_cursor=found.next_cursor, with_groups=with_groups
    )


# --- One playbook ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRow:
    version: int
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PlaybookInfo:
    id: uuid.UUID
    name: str
    description: str
    latest_version: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PlaybookPage:
    playbook: PlaybookInfo
    #: The version whose source the editor holds (the latest unless one was asked for).
    version: int
    editor: SourceCheck
    versions: list[VersionRow]
    versions_cursor: str | None
    versions_next: str | None
    groups: list[GroupUse]
    groups_cursor: str | None
    groups_next: str | None
    with_groups: bool


async def playbook_info(session: AsyncSession, playbook_id: uuid.UUID) -> PlaybookInfo:
    playbook = await playbook_service.get(session, playbook_id)
    return PlaybookInfo(
        id=playbook.id,
        name=playbook.name,
        description=playbook.description,
        latest_version=playbook.latest_version,
        created_at=playbook.created_at,
        updated_at=playbook.updated_at,
    )


async def playbook_page(
    session: AsyncSession,
    playbook_id: uuid.UUID,
    *,
    version: int | None = None,
    editor: SourceCheck | None = None,
    versions_cursor: str | None = None,
    groups_cursor: str | None = None,
    with_groups: bool,
) -> PlaybookPage:
    """The playbook's page: ``editor`` (a refused save's text and problems) or the source of
    ``version`` (the latest by default), its versions and, given ``with_groups``, the groups
    that use it."""
    info = await playbook_info(session, playbook_id)
    shown = await playbook_service.get_version(session, playbook_id, version)
    versions = await playbook_service.list_versions(
        session, playbook_id, cursor=versions_cursor, limit=VERSIONS_PAGE
    )
    groups: list[GroupUse] = []
    groups_next = None
    if with_groups:
        using = await account_groups.groups_using_playbook(
            session, playbook_id, cursor=groups_cursor, limit=GROUPS_PAGE
        )
        groups = [_group_use(row) for row in using.items]
        groups_next = using.next_cursor
    return PlaybookPage(
        playbook=info,
        version=shown.version,
        editor=editor or SourceCheck(source=shown.source, problems=[]),
        versions=[
            VersionRow(version=row.version, created_by=row.created_by, created_at=row.created_at)
            for row in versions.items
        ],
        versions_cursor=versions_cursor,
        versions_next=versions.next_cursor,
        groups=groups,
        groups_cursor=groups_cursor,
        groups_next=groups_next,
        with_groups=with_groups,
    )


# --- Diff --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One row of a side-by-side diff: ``kind`` is same, changed, added, removed, or fold
    (``folded`` unchanged lines not shown)."""

    kind: str
    old_line: int | None = None
    old_text: str | None = None
    new_line: int | None = None
    new_text: str | None = None
    folded: int = 0


@dataclass(frozen=True, slots=True)
class Diff:
    old: VersionRow
    new: VersionRow
    rows: list[DiffRow]
    added: int
    removed: int
    changed: int


def side_by_side(old: str, new: str, *, context: int = DIFF_CONTEXT) -> list[DiffRow]:
    """``old`` and ``new`` line by line (difflib): a changed line pairs its old and new
    text, unchanged runs longer than twice ``context`` are folded."""
    old_lines = old.splitlines()
    new_lines = new.splitlines()
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    opcodes = matcher.get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            rows.extend(_equal_rows(old_lines, i1, i2, j1, index, len(opcodes), context))
            continue
        pairs = max(i2 - i1, j2 - j1)
        for offset in range(pairs):
            i, j = i1 + offset, j1 + offset
            has_old, has_new = i < i2, j < j2
            kind = "changed" if has_old and has_new else "removed" if has_old else "added"
            rows.append(
                DiffRow(
                    kind=kind,
                    old_line=i + 1 if has_old else None,
                    old_text=old_lines[i] if has_old else None,
                    new_line=j + 1 if has_new else None,
                    new_text=new_lines[j] if has_new else None,
                )
            )
    return rows


def _equal_rows(
    lines: list[str], i1: int, i2: int, j1: int, index: int, count: int, context: int
) -> list[DiffRow]:
    def row(i: int) -> DiffRow:
        text = lines[i]
        return DiffRow(
            kind="same", old_line=i + 1, old_text=text, new_line=j1 + i - i1 + 1, new_text=text
        )

    head = context if index > 0 else 0  # lines after the previous change
    tail = context if index < count - 1 else 0  # lines before the next change
    if i2 - i1 <= head + tail:
        return [row(i) for i in range(i1, i2)]
    shown = [row(i) for i in range(i1, i1 + head)]
    shown.append(DiffRow(kind="fold", folded=i2 - i1 - head - tail))
    shown.extend(row(i) for i in range(i2 - tail, i2))
    return shown


async def diff(session: AsyncSession, playbook_id: uuid.UUID, old: int, new: int) -> Diff:
    """Versions ``old`` and ``new`` side by side (404 when either does not exist); the
    comparison runs off the event loop (two sources of 256 KB take a moment)."""
    before = await playbook_service.get_version(session, playbook_id, old)
    after = await playbook_service.get_version(session, playbook_id, new)
    rows = await asyncio.to_thread(side_by_side, before.source, after.source)
    return Diff(
        old=VersionRow(before.version, before.created_by, before.created_at),
        new=VersionRow(after.version, after.created_by, after.created_at),
        rows=rows,
        added=sum(1 for row in rows if row.kind == "added"),
        removed=sum(1 for row in rows if row.kind == "removed"),
        changed=sum(1 for row in rows if row.kind == "changed"),
    )


# --- Dry run -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DryRunForm:
    """The dry-run panel's fields as typed (kept to fill the form again)."""

    version: str = ""
    text: str = ""
    sender_id: str = ""
    sender_username: str = ""
    sender_first_name: str = "Alex"
    chat_id: str = ""
    chat_title: str = ""
    at: str = ""
    mentions_account: bool = False
    reply_to_account: bool = False


@dataclass(frozen=True, slots=True)
class DryRunAnswer:
    """What the dry run said, or why it did not run (``error``: a sentence to show)."""

    form: DryRunForm
    result: DryRunRead | None = None
    error: str | None = None
    problems: list[Problem] | None = None


def _integer(raw: str, what: str) -> int | None:
    text = raw.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        msg = _("%(field)s: a whole number.") % {"field": _(what)}
        raise ValueError(msg) from None


def dry_run_request(form: DryRunForm) -> DryRunRequest:
    """The API's dry-run request from the panel's fields; ``ValueError`` names a field."""
    version = _integer(form.version, "Version")
    chat_id = _integer(form.chat_id, "Group")
    sender_id = _integer(form.sender_id, "Sender id")
    message: dict[str, object] = {
        "text": form.text,
        "sender_id": sender_id,
        "sender_username": form.sender_username.strip().lstrip("@") or None,
        "sender_first_name": form.sender_first_name.strip() or "Alex",
        "mentions_account": form.mentions_account,
        "reply_to_account": form.reply_to_account,
    }
    if chat_id is not None:
        message["chat_id"] = chat_id
    if form.chat_title.strip():
        message["chat_title"] = form.chat_title.strip()
    if form.at.strip():
        # <input type=datetime-local> has no zone: the panel says it is UTC.
        at = form.at.strip()
        message["at"] = at if _ZONED.search(at) else f"{at}Z"
    try:
        return DryRunRequest.model_validate({"version": version, "message": message})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        msg = f"{where}: {first['msg']}"
        raise ValueError(msg) from None


async def dry_run(
    sessionmaker: async_sessionmaker[AsyncSession],
    llm: LlmConfig | None,
    playbook_id: uuid.UUID,
    form: DryRunForm,
) -> DryRunAnswer:
    """The API's dry run of the panel's message: the stored version read in a short
    read-only transaction, compiled and evaluated after it."""
    try:
        request = dry_run_request(form)
    except ValueError as exc:
        return DryRunAnswer(form=form, error=str(exc))
    async with unit_of_work(sessionmaker, read_only=True) as session:
        stored = await playbook_service.stored_version(session, playbook_id, request.version)
    try:
        compiled = await playbook_service.compile_stored(stored)
    except PlaybookInvalid as exc:
        return DryRunAnswer(
            form=form,
            error=f"version {stored.version} no longer compiles",
            problems=problems_of(exc),
        )
    result = await playbook_service.dry_run_request(llm, compiled, request)
    return DryRunAnswer(form=form, result=result)
