"""products, stock, price_history, stores, customer_interest: the catalog (omnicart.catalog)

Revision ID: 0007_catalog
Revises: 0006_analytics
Create Date: 2026-11-24 04:02:05.568795
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007_catalog'
down_revision: str | Sequence[str] | None = '0006_analytics'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_interest',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='The id, or its keyed hash if personal.'),
    sa.Column('customer_id', sa.String(length=200), nullable=False, comment='Whose workflow to tell.'),
    sa.Column('reason', sa.String(length=16), nullable=False, comment='viewed, carted or requested: the strongest.'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, comment='The first event that showed it.'),
    sa.Column('stated_at', sa.DateTime(timezone=True), nullable=False, comment='The latest event that showed it.'),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sku', 'customer_ref')
    )
    with op.batch_alter_table('customer_interest', schema=None) as batch_op:
        batch_op.create_index('ix_customer_interest_customer_ref', ['customer_ref'], unique=False)

    op.create_table('price_history',
    sa.Column('event_id', sa.String(length=200), nullable=False, comment='One row per event: idempotent.'),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('price', sa.Double(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False, comment='When the price took effect (event time).'),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('price_history', schema=None) as batch_op:
        batch_op.create_index('ix_price_history_sku_at', ['sku', 'at'], unique=False)

    op.create_table('products',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('image_url', sa.String(length=2048), nullable=True),
    sa.Column('category', sa.String(length=200), nullable=True),
    sa.Column('details_at', sa.DateTime(timezone=True), nullable=True, comment='Time of the product_updated applied.'),
    sa.Column('price', sa.Double(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('price_at', sa.DateTime(timezone=True), nullable=True, comment='Time of the event that set the price.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True, comment='The newest event time applied.'),
    sa.PrimaryKeyConstraint('sku'),
    comment="One row per sku; also the lock writers of that sku's stock take, so restocks are seen once."
    )
    op.create_table('stock',
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('location', sa.String(length=200), nullable=False, comment='online, or a store_id.'),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Time of the event that set it.'),
    sa.PrimaryKeyConstraint('sku', 'location')
    )
    op.create_table('stores',
    sa.Column('store_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('address', sa.String(length=2048), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('latitude', sa.Double(), nullable=True),
    sa.Column('longitude', sa.Double(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='Time of the store_updated applied.'),
    sa.PrimaryKeyConstraint('store_id')
    )


def downgrade() -> None:
    op.drop_table('stores')
    op.drop_table('stock')
    op.drop_table('products')
    with op.batch_alter_table('price_history', schema=None) as batch_op:
        batch_op.drop_index('ix_price_history_sku_at')

    op.drop_table('price_history')
    with op.batch_alter_table('customer_interest', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_interest_customer_ref')

    op.drop_table('customer_interest')
