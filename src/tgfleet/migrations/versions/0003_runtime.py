"""runtime: observed account state, timeline, group settings, playbooks

Revision ID: 0003_runtime
Revises: 0002_vault
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0003_runtime"
down_revision: str | None = "0002_vault"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("restart_seq", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "playbook",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_playbook")),
        sa.UniqueConstraint("name", name=op.f("uq_playbook_name")),
    )
    op.create_table(
        "playbook_version",
        sa.Column("playbook_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("playbook_id", "version", name=op.f("pk_playbook_version")),
        sa.ForeignKeyConstraint(
            ["playbook_id"],
            ["playbook.id"],
            name=op.f("fk_playbook_version_playbook_id_playbook"),
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "account_status",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since", TZDateTime(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("restart_seq", sa.Integer(), nullable=False),
        sa.Column("secret_version", sa.Integer(), nullable=True),
        sa.Column("last_error_code", sa.String(64), nullable=True),
        sa.Column("last_error_message", sa.String(500), nullable=True),
        sa.Column("last_error_at", TZDateTime(), nullable=True),
        sa.Column("wait_until", TZDateTime(), nullable=True),
        sa.Column("messages_received", sa.BigInteger(), nullable=False),
        sa.Column("replies_sent", sa.BigInteger(), nullable=False),
        sa.Column("replies_suppressed", sa.BigInteger(), nullable=False),
        sa.Column("reconnects", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_status")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_account_status_account_id_account"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_account_status_state"), "account_status", ["state"])
    op.create_table(
        "account_event",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("at", TZDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("previous_state", sa.String(16), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("message", sa.String(500), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_event")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_account_event_account_id_account"),
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_account_event_account_id_id", "account_event", ["account_id", "id"])
    op.create_table(
        "account_group",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("title", sa.String(255), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("playbook_id", sa.Uuid(), nullable=True),
        sa.Column("playbook_version", sa.Integer(), nullable=True),
        sa.Column("disabled_reason", sa.String(64), nullable=True),
        sa.Column("disabled_at", TZDateTime(), nullable=True),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "chat_id", name=op.f("pk_account_group")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_account_group_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["playbook_id"],
            ["playbook.id"],
            name=op.f("fk_account_group_playbook_id_playbook"),
            ondelete="RESTRICT",
        ),
    )
    op.create_index(op.f("ix_account_group_playbook_id"), "account_group", ["playbook_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_account_group_playbook_id"), table_name="account_group")
    op.drop_table("account_group")
    op.drop_index("ix_account_event_account_id_id", table_name="account_event")
    op.drop_table("account_event")
    op.drop_index(op.f("ix_account_status_state"), table_name="account_status")
    op.drop_table("account_status")
    op.drop_table("playbook_version")
    op.drop_table("playbook")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("restart_seq")
