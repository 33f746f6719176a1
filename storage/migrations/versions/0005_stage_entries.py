"""stage entries

Revision ID: 0005_stage_entries
Revises: 0004_test_sends
Create Date: 2026-12-02 19:15:00

Every stage a customer enters, recorded by the journey at the entry: stage flows, retention
and churn are queries over it. Journeys running before it record their next entries only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_stage_entries"
down_revision = "0004_test_sends"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stage_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.String(length=16), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("previous_stage", sa.String(length=100), nullable=True),
        sa.Column("journey_version", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "customer_id", "instance", "entry"),
    )
    op.create_index("ix_stage_entries_customer_id", "stage_entries", ["customer_id"])
    op.create_index("ix_stage_entries_entered_at", "stage_entries", ["entered_at"])


def downgrade() -> None:
    op.drop_index("ix_stage_entries_entered_at", table_name="stage_entries")
    op.drop_index("ix_stage_entries_customer_id", table_name="stage_entries")
    op.drop_table("stage_entries")
