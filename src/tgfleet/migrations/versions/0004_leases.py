"""leases: registered workers and account leases (many workers on PostgreSQL)

Revision ID: 0004_leases
Revises: 0003_runtime
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0004_leases"
down_revision: str | None = "0003_runtime"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", TZDateTime(), nullable=False),
        sa.Column("heartbeat_at", TZDateTime(), nullable=False),
        sa.Column("expires_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker")),
    )
    op.create_index(op.f("ix_worker_expires_at"), "worker", ["expires_at"])
    op.create_table(
        "account_lease",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=True),
        sa.Column("acquired_at", TZDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_lease")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_account_lease_account_id_account"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_account_lease_worker_id"), "account_lease", ["worker_id"])
    op.create_index(
        "ix_account_lease_free",
        "account_lease",
        ["account_id"],
        postgresql_where=sa.text("worker_id IS NULL"),
        sqlite_where=sa.text("worker_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_account_lease_free", table_name="account_lease")
    op.drop_index(op.f("ix_account_lease_worker_id"), table_name="account_lease")
    op.drop_table("account_lease")
    op.drop_index(op.f("ix_worker_expires_at"), table_name="worker")
    op.drop_table("worker")
