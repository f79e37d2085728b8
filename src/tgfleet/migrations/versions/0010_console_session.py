"""console: server-side sessions of the web console (the cookie's token hashed)

Revision ID: 0010_console_session
Revises: 0009_audit_key
Create Date: 2026-12-07

``console_session`` holds one row per signed-in console browser: the SHA-256 of the cookie's
random token (never the token), its user and that user's ``token_epoch`` at sign-in (a
disable or password change moves the epoch and so ends the session), when it was created
and last seen, its absolute end, the client's address and user agent, and when it was
revoked (logout). Downgrading drops the table: every console user signs in again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0010_console_session"
down_revision: str | None = "0009_audit_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_epoch", sa.Integer(), nullable=False),
        sa.Column("created_at", TZDateTime(), nullable=False),
        sa.Column("last_seen_at", TZDateTime(), nullable=False),
        sa.Column("expires_at", TZDateTime(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.Column("revoked_at", TZDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_session")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_session_token_hash")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_console_session_user_id_user"),
            ondelete="CASCADE",
        ),
    )
    op.create_index(op.f("ix_console_session_user_id"), "console_session", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_session_user_id"), table_name="console_session")
    op.drop_table("console_session")
