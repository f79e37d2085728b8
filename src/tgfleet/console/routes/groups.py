"""The groups page: every group the fleet's accounts are in, by chat (filters in the URL,
paged by chat id), and bulk enable/disable of replies with a preview of exactly which
(account, group) pairs change; the confirmation sends those pairs and nothing else to the
API twin's bulk service (``POST /api/v1/accounts/groups/bulk``: same permission, same
audit record)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from tgfleet.account import groups as account_groups
from tgfleet.account.exceptions import GroupNeedsPlaybook, InvalidGroupSettings
from tgfleet.auth.dependencies import audit_context
from tgfleet.console import views_groups
from tgfleet.console.guard import AccountReader, AccountWriter
from tgfleet.console.i18n import gettext as _
from tgfleet.console.i18n import ngettext
from tgfleet.console.pages import page, wants_block
from tgfleet.console.web import redirect_with_flash as _redirect
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.http import DbSession, Meta, reads_only
from tgfleet.playbook.exceptions import PlaybookNotFound, PlaybookVersionNotFound

router = APIRouter(include_in_schema=False)

#: Checkboxes one page can carry: every account listed under every chat.
_PAGE_PAIRS = views_groups.GROUPS_PAGE * views_groups.ACCOUNTS_PER_CHAT
_STATE = "^(|enabled|disabled)$"


def _filters(q: str, state: str) -> views_groups.GroupFilters:
    return views_groups.GroupFilters(q=q.strip(), state=state)


def _back(filters: views_groups.GroupFilters) -> str:
    query = filters.query()
    return "/groups" + (f"?{query}" if query else "")


@router.get("/groups")
async def groups(
    request: Request,
    viewer: AccountReader,
    session: DbSession,
    q: Annotated[str, Query(max_length=200)] = "",
    state: Annotated[str, Query(pattern=_STATE)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    data = await views_groups.groups_page(session, _filters(q, state), cursor or None)
    return page(
        request,
        "groups.html",
        viewer,
        {"data": data},
        name="groups",
        block="results" if wants_block(request, "results") else None,
    )


class BulkChoice:
    """What the groups page's bulk bar posts: enable or disable, an optional playbook for an
    enable, the filter the page showed, and the pairs and whole chats checked."""

    def __init__(
        self,
        action: Annotated[str, Form(pattern="^(enable|disable)$")],
        pair: Annotated[list[str] | None, Form(max_length=_PAGE_PAIRS)] = None,
        playbook: Annotated[str, Form(max_length=36)] = "",
        version: Annotated[str, Form(max_length=10)] = "",
        q: Annotated[str, Form(max_length=200)] = "",
        state: Annotated[str, Form(pattern=_STATE)] = "",
    ) -> None:
        self.enable = action == "enable"
        self.action = action
        self.pairs = list(dict.fromkeys(views_groups.parse_pair(raw) for raw in pair or ()))
        try:
            self.playbook_id = uuid.UUID(playbook) if playbook.strip() else None
            self.version = int(version) if version.strip() else None
        except ValueError:
            msg = _("Choose a playbook from the list and a version number.")
            raise InvalidInput(msg) from None
        if self.version is not None and not 1 <= self.version <= 2**31 - 1:
            msg = _("A playbook version is a number from 1.")
            raise InvalidInput(msg)
        self.filters = _filters(q, state)


@router.post("/groups/preview")
@reads_only
async def bulk_preview(
    request: Request,
    viewer: AccountWriter,
    session: DbSession,
    choice: Annotated[BulkChoice, Depends()],
    chat: Annotated[list[int] | None, Form(max_length=views_groups.GROUPS_PAGE)] = None,
) -> Response:
    """Which (account, group) pairs the change touches and how, before it does."""
    back = _back(choice.filters)
    pairs = await views_groups.selected_pairs(
        session, choice.pairs, list(dict.fromkeys(chat or ())), choice.filters.enabled
    )
    if not pairs:
        return _redirect(back, _("Select at least one group or account first."), "warn")
    preview = await views_groups.bulk_preview(
        session, pairs, enable=choice.enable, playbook_id=choice.playbook_id, version=choice.version
    )
    return page(
        request,
        "groups_preview.html",
        viewer,
        {"choice": choice, "preview": preview, "back": back},
        name="groups",
    )


@router.post("/groups/bulk")
async def bulk(
    viewer: AccountWriter,
    session: DbSession,
    meta: Meta,
    choice: Annotated[BulkChoice, Depends()],
) -> Response:
    """Apply a confirmed change to exactly the pairs the preview listed, through the API's
    bulk service: one call per set of chats sharing the same accounts, so no call writes a
    pair the preview did not show. All or nothing: a refusal writes none of them."""
    back = _back(choice.filters)
    if not choice.pairs:
        return _redirect(back, _("Nothing to change."), "warn")
    if len(choice.pairs) > views_groups.BULK_MAX_PAIRS:
        msg = _("At most %(n)s groups per change.") % {"n": views_groups.BULK_MAX_PAIRS}
        raise InvalidInput(msg)
    context = audit_context(viewer.principal, meta)
    written = 0
    try:
        async with session.begin_nested():
            for account_ids, chat_ids in views_groups.by_account_set(choice.pairs):
                result = await account_groups.bulk_set_groups(
                    session,
                    context,
                    ids=account_ids,
                    chat_ids=chat_ids,
                    enabled=choice.enable,
                    playbook_id=choice.playbook_id,
                    playbook_version=choice.version,
                )
                written += result.groups
    except (
        GroupNeedsPlaybook,
        InvalidGroupSettings,
        PlaybookNotFound,
        PlaybookVersionNotFound,
    ) as exc:
        return _redirect(back, _("Nothing changed: %(why)s.") % {"why": exc.message}, "bad")
    text = (
        ngettext("Replies on in %(n)s group.", "Replies on in %(n)s groups.", written)
        if choice.enable
        else ngettext("Replies off in %(n)s group.", "Replies off in %(n)s groups.", written)
    ) % {"n": written}
    level = "ok"
    if written < len(choice.pairs):
        gone = len(choice.pairs) - written
        text += " " + _("%(n)s of the previewed groups no longer exist.") % {"n": gone}
        level = "warn"
    return _redirect(back, text, level)
