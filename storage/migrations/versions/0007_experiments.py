"""experiment assignments and winners

Revision ID: 0007_experiments
Revises: 0006_conversions
Create Date: 2026-12-02 19:50:00

Every split assignment, recorded by the journey when a customer first reaches the split, and
the moment a split's winner rule held: the experiments report and the winner decision are
queries over them. Journeys running before it keep hashing arms without recording them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_experiments"
down_revision = "0006_conversions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.String(length=100), nullable=False),
        sa.Column("split", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("instance", sa.String(length=16), nullable=False),
        sa.Column("arm", sa.String(length=100), nullable=True),
        sa.Column("by_winner", sa.Boolean(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "split", "customer_id", "instance"),
    )
    op.create_index("ix_experiment_assignments_customer_id", "experiment_assignments", ["customer_id"])
    op.create_table(
        "experiment_winners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.String(length=100), nullable=False),
        sa.Column("split", sa.String(length=100), nullable=False),
        sa.Column("arm", sa.String(length=100), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "split"),
    )


def downgrade() -> None:
    op.drop_table("experiment_winners")
    op.drop_index("ix_experiment_assignments_customer_id", table_name="experiment_assignments")
    op.drop_table("experiment_assignments")
