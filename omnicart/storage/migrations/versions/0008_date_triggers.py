"""customer_last_events: when each customer last did each thing, for date-based triggers (omnicart.customers)

Revision ID: 0008_date_triggers
Revises: 0007_catalog
Create Date: 2026-11-24 04:02:43.606508
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008_date_triggers'
down_revision: str | Sequence[str] | None = '0007_catalog'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_last_events',
    sa.Column('customer_ref', sa.String(length=200), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False, comment='Latest event of this type (event time).'),
    sa.PrimaryKeyConstraint('customer_ref', 'event_type')
    )
    with op.batch_alter_table('customer_last_events', schema=None) as batch_op:
        batch_op.create_index('ix_customer_last_events_type_at', ['event_type', 'at', 'customer_ref'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('customer_last_events', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_last_events_type_at')

    op.drop_table('customer_last_events')
