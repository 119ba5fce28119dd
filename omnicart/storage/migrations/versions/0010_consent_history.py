"""consent_history: every consent change with its source and evidence (omnicart.consent)

Revision ID: 0010_consent_history
Revises: 0009_date_coverage
Create Date: 2026-11-24 05:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_consent_history'
down_revision: str | Sequence[str] | None = '0009_date_coverage'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('consent_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='The id, or its keyed hash if personal.'),
    sa.Column('event_id', sa.String(length=200), nullable=False, comment='The event that stated the change.'),
    sa.Column('subject', sa.String(length=80), nullable=False, comment='A channel (email, sms, push) or topic:<name>.'),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False, comment="Where it came from: form, sms_keyword, ..."),
    sa.Column('producer', sa.String(length=16), nullable=False, comment="The envelope's source: web, email, sms, ..."),
    sa.Column('evidence', sa.JSON(), nullable=False, comment="The event's evidence (form URL and text, IP, SID, ...)."),
    sa.Column('recipient', sa.String(length=254), nullable=True, comment='Plain address; cleared by retention.'),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False, comment='When it happened (event time).'),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'subject', name='uq_consent_history_event_subject')
    )
    with op.batch_alter_table('consent_history', schema=None) as batch_op:
        batch_op.create_index('ix_consent_history_customer', ['customer_ref', 'occurred_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consent_history', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_history_customer')

    op.drop_table('consent_history')
