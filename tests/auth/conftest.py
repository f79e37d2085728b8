"""Fixtures of the auth tests."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, user_with_role
from tgfleet.auth.service import Security


@pytest.fixture
async def admin(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> Credentials:
    """A logged-in admin named ``root``."""
    return await user_with_role(client, sessionmaker, security, "admin", username="root")
