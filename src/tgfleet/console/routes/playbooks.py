"""The playbook pages: the list (with the groups that use each) and a new playbook; one
playbook's editor with its problems on their lines, its versions, a diff of any two, the
groups that use it with their pinned version, and a dry run. Every action is the API twin's
service with the same permission and audit record: saving (``playbook:write``) compiles
before its transaction opens, as the API's; pinning a group is the account groups service
(``account:write``); the dry run needs ``playbook:read`` only (it writes nothing)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from tgfleet.account import groups as account_groups
from tgfleet.account.exceptions import GroupNeedsPlaybook, GroupNotFound, InvalidGroupSettings
from tgfleet.account.schemas import CHAT_ID_MAX, CHAT_ID_MIN
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import views_playbook
from tgfleet.console.guard import (
    AccountWriter,
    PlaybookReader,
    PlaybookTester,
    PlaybookWriter,
    Viewer,
)
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page, wants_block
from tgfleet.console.views_account import parse_id as parse_account_id
from tgfleet.console.web import redirect_with_flash
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.http import DbSession, Meta
from tgfleet.kit.schema import INT32_MAX
from tgfleet.playbook import service as playbook_service
from tgfleet.playbook.exceptions import (
    PlaybookInvalid,
    PlaybookNameTaken,
    PlaybookUnchanged,
    PlaybookVersionNotFound,
)
from tgfleet.playbook.llm import LlmConfig
from tgfleet.playbook.schemas import SOURCE_BODY_MAX

router = APIRouter(include_in_schema=False)

Cursor = Annotated[str | None, Query(max_length=500)]
VersionQuery = Annotated[int | None, Query(ge=1, le=INT32_MAX)]
SourceField = Annotated[str, Form(max_length=SOURCE_BODY_MAX)]
#: The form's name field may carry more than the name limit so that the domain names it.
NameField = Annotated[str, Form(max_length=500)]
DescriptionField = Annotated[str, Form(max_length=playbook_service.DESCRIPTION_MAX)]
#: The problems block of an editor (the Check button swaps it).
PROBLEMS_BLOCK = "problems"
#: The new playbook's editor (its element ids).
NEW = "new"


def _form_text(source: str) -> str:
    """A textarea posts CRLF line ends (HTML's form encoding): the YAML is kept with LF."""
    return source.replace("\r\n", "\n")


# --- The list and a new playbook ---------------------------------------------------------------


async def _list_page(
    request: Request,
    viewer: Viewer,
    components: AppComponents,
    *,
    cursor: str | None = None,
    new: dict[str, object] | None = None,
    status_code: int = 200,
) -> Response:
    async with unit_of_work(components.sessionmaker, deferred=True) as session:
        data = await views_playbook.playbook_list(
            session, cursor=cursor, with_groups=viewer.can("account:read")
        )
    new = new or {}
    editor = new.get("editor") or views_playbook.starter()
    return page(
        request,
        "playbooks.html",
        viewer,
        {"data": data, "new": new, "editor": editor, "editor_id": NEW},
        name="playbooks",
        status_code=status_code,
    )


@router.get("/playbooks")
async def playbooks(
    request: Request, viewer: PlaybookReader, session: DbSession, cursor: Cursor = None
) -> Response:
    data = await views_playbook.playbook_list(
        session, cursor=cursor or None, with_groups=viewer.can("account:read")
    )
    context = {"data": data, "new": {}, "editor": views_playbook.starter(), "editor_id": NEW}
    return page(request, "playbooks.html", viewer, context, name="playbooks")


@router.post("/playbooks")
async def create(
    request: Request,
    viewer: PlaybookWriter,
    components: AppComponents,
    meta: Meta,
    name: NameField = "",
    source: SourceField = "",
    description: DescriptionField = "",
) -> Response:
    """A new playbook (version 1): the API's ``POST /playbooks`` service. A source with
    problems comes back in the form with each problem on its line; nothing is written."""
    text = _form_text(source)
    checked, compiled = await views_playbook.check_source(text, "save")
    problems = list(checked.problems)
    if compiled is not None:
        try:
            async with unit_of_work(components.sessionmaker) as session:
                playbook = await playbook_service.create(
                    session,
                    audit_context(viewer.principal, meta),
                    name=name,
                    source=compiled,
                    description=description,
                )
        except PlaybookNameTaken as exc:
            problems.append(views_playbook.Problem(line=None, path="name", message=exc.message))
        except PlaybookInvalid as exc:
            problems.extend(views_playbook.problems_of(exc))
        else:
            return redirect_with_flash(
                f"/playbooks/{playbook.id}",
                _("Playbook %(name)s created: version 1.") % {"name": playbook.name},
            )
    editor = views_playbook.SourceCheck(source=text, problems=problems, attempt="save")
    new = {"name": name, "description": description, "editor": editor}
    return await _list_page(request, viewer, components, new=new, status_code=422)


@router.post("/playbooks/check")
async def check_new(
    request: Request,
    viewer: PlaybookWriter,
    components: AppComponents,
    name: NameField = "",
    source: SourceField = "",
    description: DescriptionField = "",
) -> Response:
    """Check a new playbook's source without saving: the problems block (htmx), or the
    list page with the form as it was."""
    editor, _compiled = await views_playbook.check_source(_form_text(source), "check")
    if wants_block(request, f"{PROBLEMS_BLOCK}-{NEW}"):
        return page(
            request,
            "playbooks.html",
            viewer,
            {"editor": editor, "editor_id": NEW},
            name="playbooks",
            block=PROBLEMS_BLOCK,
        )
    new = {"name": name, "description": description, "editor": editor}
    return await _list_page(request, viewer, components, new=new)


# --- One playbook ------------------------------------------------------------------------------


async def _playbook_page(
    request: Request,
    viewer: Viewer,
    components: AppComponents,
    playbook_id: uuid.UUID,
    *,
    editor: views_playbook.SourceCheck | None = None,
    answer: views_playbook.DryRunAnswer | None = None,
    description: str | None = None,
    status_code: int = 200,
) -> Response:
    async with unit_of_work(components.sessionmaker, deferred=True) as session:
        data = await views_playbook.playbook_page(
            session, playbook_id, editor=editor, with_groups=viewer.can("account:read")
        )
    return page(
        request,
        "playbook.html",
        viewer,
        {
            "data": data,
            "editor": data.editor,
            "editor_id": str(playbook_id),
            "answer": answer or views_playbook.DryRunAnswer(form=views_playbook.DryRunForm()),
            "description": description,
        },
        name="playbooks",
        status_code=status_code,
    )


@router.get("/playbooks/{playbook_id}")
async def playbook(
    request: Request,
    playbook_id: str,
    viewer: PlaybookReader,
    session: DbSession,
    version: VersionQuery = None,
    versions_cursor: Cursor = None,
    groups_cursor: Cursor = None,
) -> Response:
    parsed = views_playbook.parse_id(playbook_id)
    data = await views_playbook.playbook_page(
        session,
        parsed,
        version=version,
        versions_cursor=versions_cursor or None,
        groups_cursor=groups_cursor or None,
        with_groups=viewer.can("account:read"),
    )
    context = {
        "data": data,
        "editor": data.editor,
        "editor_id": str(parsed),
        "answer": views_playbook.DryRunAnswer(form=views_playbook.DryRunForm()),
        "description": None,
    }
    return page(request, "playbook.html", viewer, context, name="playbooks")


@router.post("/playbooks/{playbook_id}")
async def save(
    request: Request,
    playbook_id: str,
    viewer: PlaybookWriter,
    components: AppComponents,
    meta: Meta,
    source: SourceField = "",
    description: Annotated[str | None, Form(max_length=playbook_service.DESCRIPTION_MAX)] = None,
) -> Response:
    """Save the editor's text as the next version: the API's ``PUT /playbooks/{id}``
    service. A text with problems stays in the editor with each problem on its line and
    nothing is written; the same text as the latest version is said so, unless the
    description changed (then only it is saved, as the API does)."""
    parsed = views_playbook.parse_id(playbook_id)
    text = _form_text(source)
    checked, compiled = await views_playbook.check_source(text, "save")
    if compiled is None:
        return await _playbook_page(
            request,
            viewer,
            components,
            parsed,
            editor=checked,
            description=description,
            status_code=422,
        )
    back = f"/playbooks/{parsed}"
    try:
        async with unit_of_work(components.sessionmaker) as session:
            before = (await playbook_service.get(session, parsed)).latest_version
            saved = await playbook_service.update(
                session,
                audit_context(viewer.principal, meta),
                parsed,
                source=compiled,
                description=description,
            )
    except PlaybookUnchanged as exc:
        return redirect_with_flash(back, exc.message, "warn")
    if saved.latest_version == before:
        text = _("Description saved; the source is the same as version %(version)s.")
        return redirect_with_flash(back, text % {"version": before})
    return redirect_with_flash(
        back, _("Saved as version %(version)s.") % {"version": saved.latest_version}
    )


@router.post("/playbooks/{playbook_id}/check")
async def check(
    request: Request,
    playbook_id: str,
    viewer: PlaybookWriter,
    components: AppComponents,
    source: SourceField = "",
) -> Response:
    """Check the editor's text without saving: the problems block (htmx), or the page with
    the text as it was."""
    parsed = views_playbook.parse_id(playbook_id)
    editor, _compiled = await views_playbook.check_source(_form_text(source), "check")
    if wants_block(request, f"{PROBLEMS_BLOCK}-{parsed}"):
        return page(
            request,
            "playbook.html",
            viewer,
            {"editor": editor, "editor_id": str(parsed)},
            name="playbooks",
            block=PROBLEMS_BLOCK,
        )
    return await _playbook_page(request, viewer, components, parsed, editor=editor)


@router.get("/playbooks/{playbook_id}/diff")
async def diff(
    request: Request,
    playbook_id: str,
    viewer: PlaybookReader,
    session: DbSession,
    old: VersionQuery = None,
    new: VersionQuery = None,
) -> Response:
    """Two versions side by side (by default the latest and the one before)."""
    parsed = views_playbook.parse_id(playbook_id)
    info = await views_playbook.playbook_info(session, parsed)
    latest = info.latest_version
    changes = await views_playbook.diff(session, parsed, old or max(1, latest - 1), new or latest)
    return page(
        request,
        "playbook_diff.html",
        viewer,
        {"playbook": info, "diff": changes},
        name="playbooks",
    )


@router.post("/playbooks/{playbook_id}/groups/{account_id}/{chat_id}")
async def pin_group(
    playbook_id: str,
    account_id: str,
    chat_id: int,
    viewer: AccountWriter,
    session: DbSession,
    meta: Meta,
    version: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Pin a group to a version of this playbook, or let it follow the latest: the API's
    ``PUT /accounts/{id}/groups/{chat_id}`` service (replies on or off as they were)."""
    parsed = views_playbook.parse_id(playbook_id)
    account = parse_account_id(account_id)
    back = f"/playbooks/{parsed}#groups"
    try:
        pinned = int(version) if version.strip() else None
    except ValueError:
        return redirect_with_flash(back, _("Choose the latest version or a version number."), "bad")
    if not CHAT_ID_MIN <= chat_id <= CHAT_ID_MAX:
        return redirect_with_flash(
            back, _("%(chat)s is not a Telegram chat id.") % {"chat": chat_id}, "bad"
        )
    refused = _("Group %(chat)s not changed: %(why)s.")
    try:
        group = await account_groups.get_group(session, account, chat_id)
        if group.playbook_id != parsed:
            why = _("it no longer uses this playbook")
            return redirect_with_flash(back, refused % {"chat": chat_id, "why": why}, "bad")
        group = await account_groups.set_group(
            session,
            audit_context(viewer.principal, meta),
            account,
            chat_id,
            enabled=group.enabled,
            playbook_id=parsed,
            playbook_version=pinned,
            title=None,
        )
    except (
        GroupNeedsPlaybook,
        GroupNotFound,
        InvalidGroupSettings,
        PlaybookVersionNotFound,
    ) as exc:
        return redirect_with_flash(back, refused % {"chat": chat_id, "why": exc.message}, "bad")
    title = group.title or str(chat_id)
    if pinned is None:
        text = _("Group %(title)s now follows the latest version.") % {"title": title}
    else:
        text = _("Group %(title)s pinned to version %(version)s.") % {
            "title": title,
            "version": pinned,
        }
    return redirect_with_flash(back, text)


@router.post("/playbooks/{playbook_id}/dry-run")
async def dry_run(
    request: Request,
    playbook_id: str,
    viewer: PlaybookTester,
    components: AppComponents,
    version: Annotated[str, Form(max_length=10)] = "",
    text: Annotated[str, Form(max_length=4096)] = "",
    sender_id: Annotated[str, Form(max_length=20)] = "",
    sender_username: Annotated[str, Form(max_length=64)] = "",
    sender_first_name: Annotated[str, Form(max_length=128)] = "Alex",
    chat_id: Annotated[str, Form(max_length=20)] = "",
    chat_title: Annotated[str, Form(max_length=255)] = "",
    at: Annotated[str, Form(max_length=40)] = "",
    mentions_account: Annotated[bool, Form()] = False,
    reply_to_account: Annotated[bool, Form()] = False,
) -> Response:
    """The API's dry run of one sample message: the rule that fires and its reply, or why
    none does. The result block (htmx), or the page with it."""
    parsed = views_playbook.parse_id(playbook_id)
    form = views_playbook.DryRunForm(
        version=version,
        text=text,
        sender_id=sender_id,
        sender_username=sender_username,
        sender_first_name=sender_first_name,
        chat_id=chat_id,
        chat_title=chat_title,
        at=at,
        mentions_account=mentions_account,
        reply_to_account=reply_to_account,
    )
    try:
        answer = await views_playbook.dry_run(
            components.sessionmaker,
            LlmConfig.from_settings(components.settings),
            parsed,
            form,
        )
    except PlaybookVersionNotFound as exc:
        answer = views_playbook.DryRunAnswer(form=form, error=exc.message)
    if wants_block(request, "dry-run-result"):
        return page(
            request, "playbook.html", viewer, {"answer": answer}, name="playbooks", block="result"
        )
    return await _playbook_page(request, viewer, components, parsed, answer=answer)
