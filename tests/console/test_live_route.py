"""``/live`` through a real uvicorn serving the whole app: a signed-in page's stream carries
the state cells and the overview's blocks as workers report changes; without a session it
is refused."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, sign_in
from tests.console.test_live import Message, messages
from tests.factories import DEFAULT_PASSWORD, create_user, make_accounts, report_states
from tgfleet.auth.service import Security
from tgfleet.sandbox.control_server import ControlServer

WAIT = 15.0


async def until_event(stream: AsyncIterator[Message], name: str) -> Message:
    async for message in stream:
        if message.event == name:
            return message
    raise AssertionError(f"the stream ended before {name}")


async def test_a_page_stream_carries_state_cells_and_overview_blocks(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    ids = await make_accounts(sessionmaker, ["live-1", "live-2"], running=True)
    await create_user(
        sessionmaker, security, username="otto", role="operator", password=DEFAULT_PASSWORD
    )
    async with (
        ControlServer(app) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as client,
    ):
        refused = await client.get("/live?view=accounts", headers=HTML)
        assert refused.status_code == 303  # to the sign-in form
        assert (await sign_in(client, "otto")).status_code == 303
        page = await client.get("/accounts", headers=HTML)
        connect = re.search(r'sse-connect="([^"]+)"', page.text)
        assert connect is not None
        url = connect.group(1).replace("&amp;", "&")
        assert url.startswith("/live?view=accounts&last_event_id=")

        async with (
            client.stream("GET", url) as accounts,
            client.stream("GET", "/live?view=overview") as overview,
        ):
            assert accounts.headers["content-type"].startswith("text/event-stream")
            await report_states(sessionmaker, ids[:1], "online", previous="starting", worker="w-9")
            cell = await until_event(messages(accounts), f"acct-{ids[0]}")
            assert 'data-state="online"' in cell.data
            assert cell.id is not None
            counts = await until_event(messages(overview), "counts")
            assert 'data-testid="online-count">1<' in counts.data
