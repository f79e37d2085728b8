"""The vault's tests with a key-file keyring: the one a rotation adds keys to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker
from tgfleet.vault.keyring import init_key_file


@pytest.fixture
def file_settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for a key-file keyring (the one a rotation adds keys to)."""
    settings = make_settings(db_url, tmp_path / "data", vault_key=None)
    settings.data_dir.mkdir(mode=0o700)
    init_key_file(settings.effective_vault_key_file)
    return settings


@pytest.fixture
async def maker(file_settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on ``file_settings``' database."""
    engine = create_engine(file_settings.effective_database_url)
    yield create_sessionmaker(engine)
    await engine.dispose()
