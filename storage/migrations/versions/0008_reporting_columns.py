"""messages record when quiet hours held them; purchases keep their amount in a column

Revision ID: 0008_reporting_columns
Revises: 0007_experiments
Create Date: 2026-12-03 06:40:00

A message quiet hours held is recorded once, when it goes out; `held_since` keeps when it
was due, so the funnel can count messages sent late by quiet hours (earlier rows have none:
journeys before it did not say). `events.amount` is a purchase's amount out of its JSON, so
the reports sum revenue in SQL; it is filled here for the purchases already recorded.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008_reporting_columns"
down_revision = "0007_experiments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("held_since", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("amount", sa.Float(), nullable=True))
    connection = op.get_bind()
    purchases = connection.execute(
        sa.text("SELECT event_id, properties FROM events WHERE type = 'purchase'")
    ).fetchall()
    amounts = [
        {"event_id": event_id, "amount": amount}
        for event_id, properties in purchases
        if (amount := _amount(properties)) is not None
    ]
    if amounts:
        connection.execute(sa.text("UPDATE events SET amount = :amount WHERE event_id = :event_id"), amounts)


def _amount(properties: Any) -> float | None:
    # As definition.events.number_in read it when this was written: a migration keeps its own copy.
    if isinstance(properties, str):
        properties = json.loads(properties)
    value = properties.get("amount") if isinstance(properties, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("amount")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_column("held_since")
