"""audit: records keyed by an audit key (key id and MAC), the checkpoint schedule

Revision ID: 0009_audit_key
Revises: 0008_user_revocation
Create Date: 2026-12-07

``audit_record.key_id`` and ``audit_record.mac`` (HMAC-SHA256 of the record's hash under
the audit key with that id) are null on the records written before: they keep verifying by
their plain hashes, which do not change. ``audit_chain_head.checkpoint_seq`` and
``checkpoint_at`` hold when the last checkpoint was published.

Downgrading drops the columns and so the MACs: the plain hash chain still verifies with the
older release, but the records are no longer keyed (upgrading again does not restore them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0009_audit_key"
down_revision: str | None = "0008_user_revocation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_record") as batch:
        batch.add_column(sa.Column("key_id", sa.String(16), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    with op.batch_alter_table("audit_chain_head") as batch:
        batch.add_column(
            sa.Column("checkpoint_seq", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("checkpoint_at", TZDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_chain_head") as batch:
        batch.drop_column("checkpoint_at")
        batch.drop_column("checkpoint_seq")
    with op.batch_alter_table("audit_record") as batch:
        batch.drop_column("mac")
        batch.drop_column("key_id")
