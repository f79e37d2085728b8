"""alerting: alerts, silences and the notification log

Revision ID: 0006_alerting
Revises: 0005_rotation_state
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0006_alerting"
down_revision: str | None = "0005_rotation_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert",
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("alertname", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(32), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("starts_at", TZDateTime(), nullable=False),
        sa.Column("ends_at", TZDateTime(), nullable=True),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_alert")),
    )
    op.create_index("ix_alert_ends_at", "alert", ["ends_at"])
    op.create_table(
        "silence",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", TZDateTime(), nullable=False),
        sa.Column("ends_at", TZDateTime(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.String(1000), nullable=False),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silence")),
    )
    op.create_index("ix_silence_ends_at", "silence", ["ends_at"])
    op.create_table(
        "notification",
        sa.Column("id", BIG_ID, nullable=False, autoincrement=True),
        sa.Column("group_key", sa.String(1000), nullable=False),
        sa.Column("receiver", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("firing", sa.JSON(), nullable=False),
        sa.Column("resolved", sa.JSON(), nullable=False),
        sa.Column("sent_at", TZDateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
    )
    op.create_index(
        "ix_notification_group_receiver_id", "notification", ["group_key", "receiver", "id"]
    )
    op.create_index("ix_notification_sent_at", "notification", ["sent_at"])


def downgrade() -> None:
    op.drop_table("notification")
    op.drop_table("silence")
    op.drop_table("alert")
