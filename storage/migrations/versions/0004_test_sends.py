"""messages record test sends

Revision ID: 0004_test_sends
Revises: 0003_republished_versions
Create Date: 2026-12-02 19:00:00

`cyklo send-test` writes a ledger row, so every message that left is auditable; `test`
marks it, and the frequency cap and reports leave it out. Every earlier row was a real send.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_test_sends"
down_revision = "0003_republished_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("test")
