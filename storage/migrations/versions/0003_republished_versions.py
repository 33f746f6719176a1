"""a version may repeat an older one's content; versions record their git commit

Revision ID: 0003_republished_versions
Revises: 0002_consent_history
Create Date: 2026-12-02 00:30:00

`cyklo rollback` publishes an older version's content as the newest version, so a content
hash may appear under two numbers: only (journey, version) stays unique.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_republished_versions"
down_revision = "0002_consent_history"
branch_labels = None
depends_on = None

# SQLite keeps the constraint unnamed: batch mode names what it reflects by this convention.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _hash_constraint() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "journey_versions_journey_id_content_hash_key"
    return "uq_journey_versions_journey_id_content_hash"


def upgrade() -> None:
    with op.batch_alter_table("journey_versions", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(_hash_constraint(), type_="unique")
        batch_op.add_column(sa.Column("git_commit", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journey_versions", naming_convention=NAMING) as batch_op:
        batch_op.drop_column("git_commit")
        batch_op.create_unique_constraint(_hash_constraint(), ["journey_id", "content_hash"])
