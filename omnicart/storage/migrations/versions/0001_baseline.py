"""Baseline: exactly the tables ``create_all`` made before omnicart had migrations.

A database made by that older code is stamped at this revision instead of running it (see
``omnicart.storage.migrate``), so this must stay identical to what those versions created.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "discount_codes",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("discount_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_discount_codes_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "ingested_events",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("forwarded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("ingested_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingested_events_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "message_evidence",
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "kind"),
    )
    op.create_table(
        "message_ledger",
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("journey", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=300), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("revoke_consent", sa.Boolean(), nullable=False),
        sa.Column("invalid_address", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    with op.batch_alter_table("message_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_ledger_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "message_recipients",
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("recipient", sa.String(length=500), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("customer_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "recipient"),
    )
    with op.batch_alter_table("message_recipients", schema=None) as batch_op:
        batch_op.create_index("ix_message_recipients_lookup", ["channel", "recipient", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("message_recipients", schema=None) as batch_op:
        batch_op.drop_index("ix_message_recipients_lookup")

    op.drop_table("message_recipients")
    with op.batch_alter_table("message_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_ledger_customer_id"))

    op.drop_table("message_ledger")
    op.drop_table("message_evidence")
    with op.batch_alter_table("ingested_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingested_events_customer_id"))

    op.drop_table("ingested_events")
    with op.batch_alter_table("discount_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_discount_codes_customer_id"))

    op.drop_table("discount_codes")
