"""The accounts table: server-side filters held in the URL, cursor paging, live states, and
bulk start/stop/restart on the selected rows or on every account matching the filter
(a preview first, then a confirmation; the result says matched and changed)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from tgfleet.account import commands as account_commands
from tgfleet.account.schemas import ControlAction
from tgfleet.auth.dependencies import audit_context
from tgfleet.console import views
from tgfleet.console.guard import AccountController, AccountReader
from tgfleet.console.pages import page, wants_block
from tgfleet.console.web import set_flash
from tgfleet.kit.http import DbSession, Meta, reads_only
from tgfleet.models import AccountState

router = APIRouter(include_in_schema=False)

#: At most this many values per repeated filter parameter (as the API).
MAX_VALUES = 50
Text = Annotated[str, Query(max_length=200)]


def _filters(
    state: list[AccountState] | None,
    label: str,
    q: str,
    worker: list[str] | None,
    group: list[int] | None,
    sort: str,
) -> views.AccountFilters:
    return views.AccountFilters(
        states=tuple(dict.fromkeys(s.value for s in state or ())),
        label=label.strip(),
        q=q.strip(),
        workers=tuple(dict.fromkeys(worker or ())),
        groups=tuple(dict.fromkeys(group or ())),
        sort=sort if sort in views.SORTS else "label",
    )


@router.get("/accounts")
async def accounts(
    request: Request,
    viewer: AccountReader,
    session: DbSession,
    state: Annotated[list[AccountState] | None, Query(max_length=MAX_VALUES)] = None,
    label: Text = "",
    q: Text = "",
    worker: Annotated[list[str] | None, Query(max_length=MAX_VALUES)] = None,
    group: Annotated[list[int] | None, Query(max_length=MAX_VALUES)] = None,
    sort: Annotated[str, Query(max_length=20)] = "label",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    filters = _filters(state, label, q, worker, group, sort)
    data = await views.accounts(session, filters, cursor or None)
    return page(
        request,
        "accounts.html",
        viewer,
        {"data": data},
        name="accounts",
        live_url="/live?view=accounts",
        block="results" if wants_block(request, "results") else None,
    )


class BulkForm:
    """What the bulk bar posts: an action, and either the selected ids or "all matching"
    with the filter the table showed."""

    def __init__(
        self,
        action: Annotated[ControlAction, Form()],
        scope: Annotated[str, Form(pattern="^(selected|matching)$")] = "selected",
        ids: Annotated[list[uuid.UUID] | None, Form(max_length=views.PAGE_SIZE * 10)] = None,
        state: Annotated[list[AccountState] | None, Form(max_length=MAX_VALUES)] = None,
        label: Annotated[str, Form(max_length=200)] = "",
        q: Annotated[str, Form(max_length=200)] = "",
        worker: Annotated[list[str] | None, Form(max_length=MAX_VALUES)] = None,
        group: Annotated[list[int] | None, Form(max_length=MAX_VALUES)] = None,
        sort: Annotated[str, Form(max_length=20)] = "label",
        expected: Annotated[int | None, Form(ge=0)] = None,
    ) -> None:
        self.action = action
        self.scope = scope
        self.ids = list(dict.fromkeys(ids or ()))
        self.filters = _filters(state, label, q, worker, group, sort)
        self.expected = expected


def _back(form: BulkForm) -> str:
    query = form.filters.query()
    return "/accounts" + (f"?{query}" if query else "")


@router.post("/accounts/bulk/preview")
@reads_only
async def bulk_preview(
    request: Request,
    viewer: AccountController,
    session: DbSession,
    form: Annotated[BulkForm, Depends()],
) -> Response:
    """What a bulk action would touch, before it does: how many accounts and which."""
    if form.scope == "selected" and not form.ids:
        response = RedirectResponse(_back(form), status_code=303)
        set_flash(response, "Select at least one account, or choose all matching.", "warn")
        return response
    preview = await views.bulk_preview(
        session, ids=form.ids if form.scope == "selected" else None, filters=form.filters
    )
    return page(
        request,
        "bulk_preview.html",
        viewer,
        {"form": form, "preview": preview, "back": _back(form)},
        name="accounts",
    )


@router.post("/accounts/bulk")
async def bulk(
    viewer: AccountController,
    session: DbSession,
    meta: Meta,
    form: Annotated[BulkForm, Depends()],
) -> Response:
    """Run a confirmed bulk action, through the API's own service (the same audit record)."""
    context = audit_context(viewer.principal, meta)
    if form.scope == "selected":
        result = await account_commands.bulk_control(
            session, context, ids=form.ids, action=form.action
        )
    else:
        result = await account_commands.bulk_control(
            session, context, filter=form.filters.bulk_filter(), action=form.action
        )
    text = f"{form.action.value}: {result.matched} matched, {result.changed} changed."
    level = "ok"
    if form.expected is not None and form.expected != result.matched:
        text += f" The preview showed {form.expected}: the fleet changed meanwhile."
        level = "warn"
    response = RedirectResponse(_back(form), status_code=303)
    set_flash(response, text, level)
    return response
