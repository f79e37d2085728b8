"""users: a token epoch that ends every JWT at once, and a unique look-alike key per username

Revision ID: 0008_user_revocation
Revises: 0007_reply_coordination
Create Date: 2026-12-07

``user.token_epoch`` is copied into every JWT at login; disabling a user, changing or
resetting their password increments it, and a JWT whose epoch differs is refused. The
state is in the database, so every API process refuses the same tokens at once.

``user.username_skeleton`` is the Unicode TR39 skeleton of the username (``admin`` and
``\\u0430dmin`` with a Cyrillic a share one). Its unique index refuses a look-alike even when two
creates race. It is nullable: existing users whose names already collide keep their names
and the later ones get no skeleton (they block nobody; an operator should rename them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_user_revocation"
down_revision: str | None = "0007_reply_coordination"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("token_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("username_skeleton", sa.String(255), nullable=True))
        batch.create_unique_constraint(batch.f("uq_user_username_skeleton"), ["username_skeleton"])


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint(batch.f("uq_user_username_skeleton"), type_="unique")
        batch.drop_column("username_skeleton")
        batch.drop_column("token_epoch")
