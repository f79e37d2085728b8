"""Fixtures the playbook API tests share."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, user_with_role
from tgfleet.auth.service import Security


@pytest.fixture
async def operator(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> Credentials:
    """A user with the operator role: may read and write playbooks."""
    return await user_with_role(client, sessionmaker, security, "operator")
