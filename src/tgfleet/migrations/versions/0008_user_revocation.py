"""users: a token epoch that ends every JWT at once, and a unique look-alike key per username

Revision ID: 0008_user_revocation
Revises: 0007_reply_coordination
Create Date: 2026-12-07

``user.token_epoch`` is copied into every JWT at login; disabling a user, changing or
resetting their password increments it, and a JWT whose epoch differs is refused. The
state is in the database, so every API process refuses the same tokens at once.

``user.username_skeleton`` is a digest of the username's Unicode TR39 skeleton (``admin``
and ``\\u0430dmin`` with a Cyrillic a share one): its unique constraint refuses a look-alike
even when two creates race. It is nullable: when existing users' names already look alike,
the oldest keeps the key and the others get none (they block nobody; rename or delete them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tgfleet.kit.names import skeleton_key

revision: str = "0008_user_revocation"
down_revision: str | None = "0007_reply_coordination"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER = sa.table(
    "user",
    sa.column("username", sa.String()),
    sa.column("created_at", sa.DateTime()),
    sa.column("username_skeleton", sa.String()),
)


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(sa.Column("token_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("username_skeleton", sa.String(64), nullable=True))
        batch.create_unique_constraint(batch.f("uq_user_username_skeleton"), ["username_skeleton"])
    bind = op.get_bind()
    taken: set[str] = set()
    oldest_first = sa.select(USER.c.username).order_by(USER.c.created_at, USER.c.username)
    for (username,) in bind.execute(oldest_first).all():
        key = skeleton_key(username)
        if key in taken:
            continue  # a look-alike of an older user: left without a key
        taken.add(key)
        bind.execute(
            sa.update(USER).where(USER.c.username == username).values(username_skeleton=key)
        )


def downgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.drop_constraint(batch.f("uq_user_username_skeleton"), type_="unique")
        batch.drop_column("username_skeleton")
        batch.drop_column("token_epoch")
