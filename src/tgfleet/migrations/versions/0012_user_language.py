"""auth: each user's console language

Revision ID: 0012_user_language
Revises: 0011_traffic_minute
Create Date: 2026-12-07

``user.language`` holds the console language the user chose (``en``, ``zh-Hans``); NULL
follows the browser's ``Accept-Language``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_user_language"
down_revision: str | None = "0011_traffic_minute"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_column("language")
