"""customers keep the time of each channel's newest consent statement

Revision ID: 0009_consent_channel_times
Revises: 0008_reporting_columns
Create Date: 2026-12-04 19:00:00

A consent change counts only if it is newer than what cyklo holds for its channel, so a
retried or late "subscribed" never undoes a newer "unsubscribed". The history dates every
change; these columns also date a withdrawal that changed nothing (a customer new to cyklo
who is unsubscribed). Earlier customers have none: their history is what a change must beat.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_consent_channel_times"
down_revision = "0008_reporting_columns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch_op:
        batch_op.add_column(sa.Column("consent_email_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("consent_sms_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch_op:
        batch_op.drop_column("consent_sms_at")
        batch_op.drop_column("consent_email_at")
