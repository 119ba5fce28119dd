"""catalog_fanouts: the restock / price-drop fan-out outbox; interest indexed by (sku, reason) (omnicart.catalog)

Revision ID: 0012_fanout
Revises: 0011_connectors
Create Date: 2026-11-24 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012_fanout'
down_revision: str | Sequence[str] | None = '0011_connectors'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('catalog_fanouts',
    sa.Column('kind', sa.String(length=16), nullable=False, comment='restock or price_drop.'),
    sa.Column('change_id', sa.String(length=200), nullable=False, comment="The causing event's id."),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False, comment='The FanoutChange the workflow starts with.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True, comment='Null until its workflow started.'),
    sa.PrimaryKeyConstraint('kind', 'change_id')
    )
    with op.batch_alter_table('catalog_fanouts', schema=None) as batch_op:
        batch_op.create_index('ix_catalog_fanouts_unstarted', ['started_at', 'created_at'], unique=False)
    with op.batch_alter_table('customer_interest', schema=None) as batch_op:
        batch_op.create_index('ix_customer_interest_sku_reason', ['sku', 'reason', 'customer_ref'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customer_interest', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_interest_sku_reason')
    with op.batch_alter_table('catalog_fanouts', schema=None) as batch_op:
        batch_op.drop_index('ix_catalog_fanouts_unstarted')

    op.drop_table('catalog_fanouts')
