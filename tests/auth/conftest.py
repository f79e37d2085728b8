"""What the auth tests share: a logged-in viewer, and the requests they make most."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, user_with_role
from tgfleet.auth.service import Security

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/auth/me"
PASSWORD = "/api/v1/auth/password"
TOKENS = "/api/v1/auth/tokens"
USERS = "/api/v1/users"
#: A password every policy rule accepts, for the users the tests create through the API.
USER_PASSWORD = "long enough pass 1"


@pytest.fixture
async def viewer(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> Credentials:
    """A logged-in user ``vera`` with the built-in viewer role."""
    return await user_with_role(client, sessionmaker, security, "viewer", username="vera")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_token(
    client: httpx.AsyncClient, headers: dict[str, str], name: str = "ci", **fields: object
) -> httpx.Response:
    """Ask for an API token named ``name`` (with ``fields`` such as scopes or expires_at) as
    whoever ``headers`` authenticate."""
    return await client.post(TOKENS, json={"name": name, **fields}, headers=headers)


async def change_password(
    client: httpx.AsyncClient, headers: dict[str, str], current: str, new: str
) -> httpx.Response:
    """Change the password of whoever ``headers`` authenticate."""
    body = {"current_password": current, "new_password": new}
    return await client.post(PASSWORD, json=body, headers=headers)


async def add_user(
    client: httpx.AsyncClient, headers: dict[str, str], username: str, role: str
) -> httpx.Response:
    """Create a user with ``USER_PASSWORD`` through the API, as whoever ``headers``
    authenticate."""
    body = {"username": username, "role": role, "password": USER_PASSWORD}
    return await client.post(USERS, json=body, headers=headers)
