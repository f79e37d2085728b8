"""What the console tests share: signing in through the real form, and reading the CSRF
token a page carries."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import DEFAULT_PASSWORD, create_user
from tgfleet.auth.service import Security

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HTML = {"Accept": "text/html,application/xhtml+xml"}


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@dataclass(frozen=True, slots=True)
class Browser:
    """An httpx client signed in to the console (its cookie jar holds the session)."""

    http: httpx.AsyncClient
    username: str
    csrf: str

    async def post(
        self, url: str, data: Mapping[str, str | list[str]] | None = None, **kwargs: object
    ) -> httpx.Response:
        form: dict[str, str | list[str]] = {"csrf_token": self.csrf, **(data or {})}
        return await self.http.post(url, data=form, headers=HTML, **kwargs)  # type: ignore[arg-type]


async def sign_in(
    client: httpx.AsyncClient, username: str, password: str = DEFAULT_PASSWORD
) -> httpx.Response:
    """The sign-in form as a browser fills it in (the login CSRF cookie included)."""
    form = await client.get("/login", headers=HTML)
    assert form.status_code == 200, form.text
    return await client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
        headers=HTML,
    )


async def browser_for(
    app_client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
    role: str,
    username: str,
) -> Browser:
    await create_user(
        sessionmaker, security, username=username, role=role, password=DEFAULT_PASSWORD
    )
    transport = app_client._transport
    http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    signed = await sign_in(http, username)
    assert signed.status_code == 303, signed.text
    page = await http.get("/", headers=HTML)
    assert page.status_code == 200, page.text
    return Browser(http=http, username=username, csrf=csrf_of(page.text))


@pytest.fixture
async def operator(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> AsyncIterator[Browser]:
    """``otto``, an operator signed in to the console."""
    browser = await browser_for(client, sessionmaker, security, "operator", "otto")
    try:
        yield browser
    finally:
        await browser.http.aclose()


@pytest.fixture
async def console_viewer(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> AsyncIterator[Browser]:
    """``vera``, a viewer signed in to the console."""
    browser = await browser_for(client, sessionmaker, security, "viewer", "vera")
    try:
        yield browser
    finally:
        await browser.http.aclose()


@pytest.fixture
async def console_admin(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> AsyncIterator[Browser]:
    """``ada``, an admin signed in to the console (the only one, unless a test adds more)."""
    browser = await browser_for(client, sessionmaker, security, "admin", "ada")
    try:
        yield browser
    finally:
        await browser.http.aclose()
