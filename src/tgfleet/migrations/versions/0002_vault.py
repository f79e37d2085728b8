"""vault: accounts, encrypted session secrets, key rotation runs

Revision ID: 0002_vault
Revises: 0001_foundation
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0002_vault"
down_revision: str | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("tg_user_id", sa.BigInteger(), nullable=True),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("dc_id", sa.Integer(), nullable=True),
        sa.Column("desired_state", sa.String(16), nullable=False),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("label", name=op.f("uq_account_label")),
    )
    op.create_index(op.f("ix_account_tg_user_id"), "account", ["tg_user_id"])
    op.create_table(
        "session_secret",
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_format", sa.String(32), nullable=False),
        sa.Column("kek_id", sa.String(32), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("auth_key_fingerprint", sa.String(64), nullable=True),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("updated_at", TZDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_session_secret")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_session_secret_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "auth_key_fingerprint", name=op.f("uq_session_secret_auth_key_fingerprint")
        ),
    )
    op.create_index(op.f("ix_session_secret_kek_id"), "session_secret", ["kek_id"])
    op.create_table(
        "vault_rotation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("target_kek_id", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rewrapped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("started_at", TZDateTime(), nullable=False),
        sa.Column("finished_at", TZDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_rotation")),
    )


def downgrade() -> None:
    op.drop_table("vault_rotation")
    op.drop_index(op.f("ix_session_secret_kek_id"), table_name="session_secret")
    op.drop_table("session_secret")
    op.drop_index(op.f("ix_account_tg_user_id"), table_name="account")
    op.drop_table("account")
