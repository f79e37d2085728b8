"""The accounts table: server-side filters held in the URL, cursor paging, live states, and
bulk start/stop/restart on the selected rows or on every account matching the filter
(a preview first, then a confirmation; the result says matched and changed)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from tgfleet.account import commands as account_commands
from tgfleet.account.schemas import AccountQuery, ControlAction
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import domain_texts, views
from tgfleet.console.guard import AccountController, AccountReader
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page, wants_block
from tgfleet.console.routes.live import live_url
from tgfleet.console.web import set_flash
from tgfleet.kit.http import DbSession, Meta, reads_only

router = APIRouter(include_in_schema=False)


def _filters(query: AccountQuery) -> views.AccountFilters:
    """The table's filters from the query the API parses the same way (same 422s)."""
    return views.AccountFilters(
        states=tuple(dict.fromkeys(state.value for state in query.state)),
        label=query.label or "",
        q=query.q or "",
        workers=tuple(dict.fromkeys(query.worker)),
        groups=tuple(dict.fromkeys(query.group)),
        sort=query.sort.value,
    )


@router.get("/accounts")
async def accounts(
    request: Request,
    viewer: AccountReader,
    components: AppComponents,
    session: DbSession,
    query: Annotated[AccountQuery, Query()],
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    filters = _filters(query)
    live = live_url(components, "accounts")
    data = await views.accounts(session, filters, cursor or None)
    return page(
        request,
        "accounts.html",
        viewer,
        {"data": data},
        name="accounts",
        live_url=live,
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
        state: Annotated[list[str] | None, Form()] = None,
        label: Annotated[str, Form()] = "",
        q: Annotated[str, Form()] = "",
        worker: Annotated[list[str] | None, Form()] = None,
        group: Annotated[list[str] | None, Form()] = None,
        sort: Annotated[str, Form()] = "label",
        expected: Annotated[int | None, Form(ge=0)] = None,
    ) -> None:
        self.action = action
        self.scope = scope
        self.ids = list(dict.fromkeys(ids or ()))
        try:
            query = AccountQuery.model_validate(
                {
                    "state": state or [],
                    "label": label or None,
                    "q": q or None,
                    "worker": worker or [],
                    "group": group or [],
                    "sort": sort,
                }
            )
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        self.filters = _filters(query)
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
        set_flash(response, _("Select at least one account, or choose all matching."), "warn")
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
    values = {
        "action": domain_texts.control_action(form.action),
        "matched": result.matched,
        "changed": result.changed,
        "expected": form.expected,
    }
    text = _("%(action)s: %(matched)s matched, %(changed)s changed.") % values
    level = "ok"
    if form.expected is not None and form.expected != result.matched:
        text += " " + _("The preview showed %(expected)s: the fleet changed meanwhile.") % values
        level = "warn"
    response = RedirectResponse(_back(form), status_code=303)
    set_flash(response, text, level)
    return response
