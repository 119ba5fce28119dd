"""connector_quarantine and shopify_inventory_items: the connectors' tables (omnicart.connectors)

Revision ID: 0011_connectors
Revises: 0010_consent_history
Create Date: 2026-11-24 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_connectors'
down_revision: str | Sequence[str] | None = '0010_consent_history'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('connector_quarantine',
    sa.Column('connector', sa.String(length=20), nullable=False, comment='shopify, woocommerce or segment.'),
    sa.Column('delivery_id', sa.String(length=200), nullable=False, comment="The platform's id."),
    sa.Column('topic', sa.String(length=100), nullable=False, comment='Webhook topic or Segment call type and event.'),
    sa.Column('customer_id', sa.String(length=200), nullable=True, comment='When the payload names one.'),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False, comment='When the platform says it happened.'),
    sa.Column('context', sa.Text(), nullable=False, comment='JSON: what headers added (shop domain...).'),
    sa.Column('payload', sa.LargeBinary(), nullable=False, comment='The body as received (may hold personal data).'),
    sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True, comment='Set once a replay took it in.'),
    sa.PrimaryKeyConstraint('connector', 'delivery_id')
    )
    op.create_table('shopify_inventory_items',
    sa.Column('inventory_item_id', sa.String(length=40), nullable=False, comment="Shopify's id, as text."),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False, comment='When a product webhook last said so.'),
    sa.PrimaryKeyConstraint('inventory_item_id')
    )


def downgrade() -> None:
    op.drop_table('shopify_inventory_items')
    op.drop_table('connector_quarantine')
