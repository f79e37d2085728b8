"""vault_rotation.state wide enough for 'done_with_failures' (18 characters)

PostgreSQL refused a rotation that ended with failures: VARCHAR(16) could not hold its final
state, so the run stayed 'running' and the request failed. SQLite does not enforce lengths.

Revision ID: 0005_rotation_state
Revises: 0004_leases
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_rotation_state"
down_revision: str | None = "0004_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vault_rotation") as batch:
        batch.alter_column(
            "state", existing_type=sa.String(16), type_=sa.String(32), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("vault_rotation") as batch:
        batch.alter_column(
            "state", existing_type=sa.String(32), type_=sa.String(16), existing_nullable=False
        )
