"""Typed async factories: make users through the real services, log in through the API."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.kit.db import unit_of_work

FACTORY_CONTEXT = AuditContext(actor="cli:factory")
DEFAULT_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    security: auth_service.Security,
    *,
    username: str,
    role: str,
    password: str = DEFAULT_PASSWORD,
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await auth_service.create_user(
            session, security, FACTORY_CONTEXT, username=username, role=role, password=password
        )


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def user_with_role(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: auth_service.Security,
    role: str,
    *,
    username: str | None = None,
    password: str = DEFAULT_PASSWORD,
) -> Credentials:
    """Create a user with ``role`` and return a logged-in credential for it."""
    name = username or f"{role}-user"
    await create_user(sessionmaker, security, username=name, role=role, password=password)
    return Credentials(name, password, await login(client, name, password))
