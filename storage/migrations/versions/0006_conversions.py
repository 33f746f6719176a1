"""conversions

Revision ID: 0006_conversions
Revises: 0005_stage_entries
Create Date: 2026-12-02 19:30:00

Attribution: each message keeps the conversion window it was sent with, and a purchase
within it is credited to the message (one row per purchase). Messages sent before this
have no window and are not credited; `cyklo report --rebuild` recomputes the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_conversions"
down_revision = "0005_stage_entries"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("conversion_window_seconds", sa.Integer(), nullable=True))
    # The funnel needs no new index on the ledger: a period is a range of ix_messages_scheduled_at
    # and a whole year a scan either way (docs/benchmarks.md, "Reports at scale").
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("journey_id", sa.String(length=100), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("step", sa.String(length=300), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("credited_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index("ix_conversions_message_id", "conversions", ["message_id"])
    op.create_index("ix_conversions_customer_id", "conversions", ["customer_id"])
    # The funnel groups a journey's conversions by their message's send time.
    op.create_index("ix_conversions_journey_sent", "conversions", ["journey_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_conversions_journey_sent", table_name="conversions")
    op.drop_index("ix_conversions_customer_id", table_name="conversions")
    op.drop_index("ix_conversions_message_id", table_name="conversions")
    op.drop_table("conversions")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("conversion_window_seconds")
