"""account: fleet traffic per minute, reply texts pruned by age

Revision ID: 0011_traffic_minute
Revises: 0010_console_session
Create Date: 2026-12-07

``traffic_minute`` holds the fleet's messages received and replies sent per UTC minute
(workers add to it with every status batch; kept seven days). ``ix_account_event_kind_at``
lets the housekeeping find the ``reply`` events whose text is older than
``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` without reading the whole timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.model import TZDateTime

revision: str = "0011_traffic_minute"
down_revision: str | None = "0010_console_session"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "traffic_minute",
        sa.Column("minute", TZDateTime(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", name=op.f("pk_traffic_minute")),
    )
    op.create_index("ix_account_event_kind_at", "account_event", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_account_event_kind_at", table_name="account_event")
    op.drop_table("traffic_minute")
