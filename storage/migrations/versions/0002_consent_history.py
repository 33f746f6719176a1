"""consent history

Revision ID: 0002_consent_history
Revises: 0001
Create Date: 2026-12-01 20:20:00

Customers who already had consent or a suppression get one row each, dated by the
profile, so an export shows them and a STOP made before this table existed can still be
lifted by START (before, only an SMS STOP could suppress SMS).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_consent_history"
down_revision = "0001"
branch_labels = None
depends_on = None

BACKFILL = [
    ("consent_email", "email", "granted", "profile", None),
    ("consent_sms", "sms", "granted", "profile", None),
    (
        "email_suppressed",
        "email",
        "suppressed",
        "sendgrid",
        "hard bounce or spam report (before consent history)",
    ),
    ("sms_suppressed", "sms", "suppressed", "sms_reply", "SMS STOP (before consent history)"),
]
"""(flag on the profile, channel, change, origin, source; None: the profile's consent_source)"""


def upgrade() -> None:
    op.create_table(
        "consent_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consent_history", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consent_history_customer_id"), ["customer_id"], unique=False)
    history = sa.table(
        "consent_history",
        *(sa.column(name) for name in ("customer_id", "channel", "change", "origin", "source", "at")),
    )
    for flag, channel, change, origin, source in BACKFILL:
        customers = sa.table(
            "customers",
            *(sa.column(name) for name in ("id", "consent_source", "consent_updated_at", "updated_at")),
            sa.column(flag, sa.Boolean()),
        )
        rows = sa.select(
            customers.c.id,
            sa.literal(channel),
            sa.literal(change),
            sa.literal(origin),
            customers.c.consent_source if source is None else sa.literal(source),
            sa.func.coalesce(customers.c.consent_updated_at, customers.c.updated_at),
        ).where(customers.c[flag] == sa.true())
        op.execute(history.insert().from_select(list(history.c.keys()), rows))


def downgrade() -> None:
    with op.batch_alter_table("consent_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_history_customer_id"))
    op.drop_table("consent_history")
