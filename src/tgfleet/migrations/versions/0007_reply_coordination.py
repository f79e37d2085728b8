"""fleet-wide replies: claims, limit windows, and the admit/release functions (PostgreSQL)

Revision ID: 0007_reply_coordination
Revises: 0006_alerting
Create Date: 2026-12-07

``tgfleet_reply_admit`` decides, in one statement sent by a worker, whether one account may
answer one message: the sender is not an account of this fleet, nobody else claimed the
message, and the account's and the group's limits over the last hour hold; if so it claims
the message and reserves the budget before returning, and announces the claim on the
``tgfleet_replies`` channel when asked to. ``tgfleet_reply_release`` gives a
reservation back when the reply was not sent. Both lock the limit rows in one order (account,
group, pair), so concurrent callers on any number of workers serialise per group and per
account and never deadlock. SQLite gets the tables only: there, one process decides in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from tgfleet.kit.model import TZDateTime

revision: str = "0007_reply_coordination"
down_revision: str | None = "0006_alerting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEND_TIMES = sa.JSON().with_variant(postgresql.ARRAY(sa.Double()), "postgresql")

WINDOW_LOCK = """
CREATE OR REPLACE FUNCTION tgfleet_reply_window_lock(p_key text, p_horizon double precision)
RETURNS double precision[] LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    times double precision[];
BEGIN
    -- A row missing (never used, or pruned by the leader's sweep while the caller waited
    -- for a lock) is created and locked again: a reply is never admitted uncounted.
    LOOP
        SELECT ARRAY(SELECT t FROM unnest(w.sent_at) t WHERE t > p_horizon ORDER BY t)
            INTO times FROM reply_window w WHERE w.key = p_key FOR UPDATE;
        IF FOUND THEN
            RETURN times;
        END IF;
        INSERT INTO reply_window (key, sent_at) VALUES (p_key, '{}') ON CONFLICT (key) DO NOTHING;
    END LOOP;
END
$$
"""

ADMIT = """
CREATE OR REPLACE FUNCTION tgfleet_reply_admit(
    p_key text,
    p_account uuid,
    p_chat bigint,
    p_sender bigint,
    p_min_interval double precision,
    p_account_hourly integer,
    p_group_hourly integer,
    p_claim_seconds double precision,
    p_announce text,
    OUT verdict text,
    OUT reserved_at double precision,
    OUT retry_in double precision
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_at double precision := extract(epoch FROM clock_timestamp());
    horizon double precision := now_at - 3600;
    holder uuid;
    account_key text := 'a:' || p_account::text;
    group_key text := 'g:' || p_chat::text;
    pair_key text := 'p:' || p_account::text || ':' || p_chat::text;
    account_times double precision[];
    group_times double precision[];
    pair_times double precision[];
    n integer;
BEGIN
    -- A message from one of our own accounts is never answered (no reply loops).
    IF p_sender IS NOT NULL AND EXISTS (SELECT 1 FROM account WHERE tg_user_id = p_sender) THEN
        verdict := 'from_fleet';
        RETURN;
    END IF;
    SELECT c.account_id INTO holder FROM reply_claim c
        WHERE c.key = p_key AND c.expires_at > clock_timestamp();
    IF FOUND THEN
        verdict := CASE WHEN holder = p_account THEN 'duplicate' ELSE 'claimed_by_other' END;
        RETURN;
    END IF;
    -- One lock order everywhere (account, group, pair): no deadlock between workers.
    account_times := tgfleet_reply_window_lock(account_key, horizon);
    group_times := tgfleet_reply_window_lock(group_key, horizon);
    pair_times := tgfleet_reply_window_lock(pair_key, horizon);
    -- The time of this reply is taken once the locks are held (a wait does not date it back).
    now_at := extract(epoch FROM clock_timestamp());
    n := cardinality(pair_times);
    IF p_min_interval > 0 AND n > 0 AND now_at - pair_times[n] < p_min_interval THEN
        verdict := 'limit:min_interval';
        retry_in := pair_times[n] + p_min_interval - now_at;
        RETURN;
    END IF;
    n := cardinality(account_times);
    IF n >= p_account_hourly THEN
        verdict := 'limit:account_hourly';
        retry_in := account_times[n - p_account_hourly + 1] + 3600 - now_at;
        RETURN;
    END IF;
    n := cardinality(group_times);
    IF n >= p_group_hourly THEN
        verdict := 'limit:group_hourly';
        retry_in := group_times[n - p_group_hourly + 1] + 3600 - now_at;
        RETURN;
    END IF;
    INSERT INTO reply_claim (key, account_id, chat_id, claimed_at, expires_at)
        VALUES (p_key, p_account, p_chat, clock_timestamp(),
                clock_timestamp() + make_interval(secs => p_claim_seconds))
        ON CONFLICT (key) DO UPDATE
            SET account_id = EXCLUDED.account_id, chat_id = EXCLUDED.chat_id,
                claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at
            WHERE reply_claim.expires_at <= EXCLUDED.claimed_at
        RETURNING account_id INTO holder;
    IF NOT FOUND THEN
        SELECT c.account_id INTO holder FROM reply_claim c WHERE c.key = p_key;
        verdict := CASE WHEN holder = p_account THEN 'duplicate' ELSE 'claimed_by_other' END;
        RETURN;
    END IF;
    UPDATE reply_window SET sent_at = account_times || now_at WHERE key = account_key;
    UPDATE reply_window SET sent_at = group_times || now_at WHERE key = group_key;
    UPDATE reply_window SET sent_at = pair_times || now_at WHERE key = pair_key;
    IF p_announce IS NOT NULL THEN
        -- Other workers waiting on this message learn it is taken without asking.
        PERFORM pg_notify('tgfleet_replies', p_announce);
    END IF;
    verdict := 'admitted';
    reserved_at := now_at;
END
$$
"""

RELEASE = """
CREATE OR REPLACE FUNCTION tgfleet_reply_release(
    p_key text,
    p_account uuid,
    p_chat bigint,
    p_reserved_at double precision,
    p_keep_claim boolean
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- The admit function's lock order (account, group, pair).
    UPDATE reply_window SET sent_at = array_remove(sent_at, p_reserved_at)
        WHERE key = 'a:' || p_account::text;
    UPDATE reply_window SET sent_at = array_remove(sent_at, p_reserved_at)
        WHERE key = 'g:' || p_chat::text;
    UPDATE reply_window SET sent_at = array_remove(sent_at, p_reserved_at)
        WHERE key = 'p:' || p_account::text || ':' || p_chat::text;
    IF NOT p_keep_claim THEN
        DELETE FROM reply_claim WHERE key = p_key AND account_id = p_account;
    END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "reply_claim",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("claimed_at", TZDateTime(), nullable=False),
        sa.Column("expires_at", TZDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_reply_claim_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_reply_claim")),
    )
    op.create_index(op.f("ix_reply_claim_account_id"), "reply_claim", ["account_id"])
    op.create_index(op.f("ix_reply_claim_expires_at"), "reply_claim", ["expires_at"])
    op.create_table(
        "reply_window",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("sent_at", SEND_TIMES, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_reply_window")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(WINDOW_LOCK)
        op.execute(ADMIT)
        op.execute(RELEASE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tgfleet_reply_release")
        op.execute("DROP FUNCTION IF EXISTS tgfleet_reply_admit")
        op.execute("DROP FUNCTION IF EXISTS tgfleet_reply_window_lock")
    op.drop_table("reply_window")
    op.drop_index(op.f("ix_reply_claim_expires_at"), table_name="reply_claim")
    op.drop_index(op.f("ix_reply_claim_account_id"), table_name="reply_claim")
    op.drop_table("reply_claim")
