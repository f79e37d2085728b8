"""``/live``: one Server-Sent Events stream per open page, over the process's one
broadcaster (``console/live.py``); what it sends depends on the page (``view``)."""

from __future__ import annotations

import uuid
import weakref
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tgfleet.account.live import Broadcaster, LiveBatch
from tgfleet.components import AppComponents, Components
from tgfleet.console.guard import AccountReader
from tgfleet.console.live_pages import SharedRender, account_messages
from tgfleet.console.stream import event_stream, requested_event_id
from tgfleet.exceptions import ServiceUnavailable

router = APIRouter(include_in_schema=False)


#: Each broadcaster's one `SharedRender` (made at its first stream, gone with it).
_SHARED: weakref.WeakKeyDictionary[Broadcaster, SharedRender] = weakref.WeakKeyDictionary()


def shared_render(broadcaster: Broadcaster, components: Components) -> SharedRender:
    shared = _SHARED.get(broadcaster)
    if shared is None:
        shared = _SHARED[broadcaster] = SharedRender(components.sessionmaker)
    return shared


def live_url(components: Components, view: str, **params: str) -> str | None:
    """The stream a page opens, resuming from the broadcaster's watermark now: take it
    BEFORE reading what the page shows, so nothing committed in between is missed (a
    change already shown may come again; applying it twice changes nothing)."""
    if components.broadcaster is None:
        return None
    query = urlencode({"view": view, **params, "last_event_id": components.broadcaster.watermark})
    return f"/live?{query}"


@router.get("/live")
async def live(
    request: Request,
    _viewer: AccountReader,
    components: AppComponents,
    view: Annotated[Literal["overview", "accounts", "account"], Query()] = "accounts",
    account: Annotated[uuid.UUID | None, Query(alias="id")] = None,
) -> Response:
    """The page's updates as they happen; ``Last-Event-ID`` (or ``?last_event_id=``, for a
    page's first connection: the id it was rendered at) resumes without a gap."""
    broadcaster = components.broadcaster
    if broadcaster is None:
        msg = "this process serves no live updates"
        raise ServiceUnavailable(msg)
    shared = shared_render(broadcaster, components)

    async def render(batch: LiveBatch) -> list[tuple[str, str]]:
        if view == "overview":
            return await shared.overview(batch)
        if view == "account" and account is not None:
            return account_messages([e for e in batch.events if e.account_id == account])
        return await shared.accounts(batch)

    return event_stream(broadcaster.subscribe(requested_event_id(request)), render)
