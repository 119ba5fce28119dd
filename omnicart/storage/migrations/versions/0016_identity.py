"""identity_links: which known customer an anonymous id belongs to (omnicart.identity)

Revision ID: 0016_identity
Revises: 0015_webhook_inbox
Create Date: 2026-11-24 06:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016_identity'
down_revision: str | Sequence[str] | None = '0015_webhook_inbox'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('identity_links',
    sa.Column('anonymous_ref', sa.String(length=80), nullable=False, comment="The anonymous id's keyed hash."),
    sa.Column('customer_id', sa.String(length=200), nullable=False, comment='The known customer it belongs to.'),
    sa.Column('customer_ref', sa.String(length=200), nullable=False,
              comment='The id, or its keyed hash if personal.'),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False, comment='When the linking event happened.'),
    sa.Column('event_id', sa.String(length=200), nullable=False, comment='The event that linked them.'),
    sa.Column('handed_over_at', sa.DateTime(timezone=True), nullable=True,
              comment="When the anonymous visitor's workflow was told to hand its state over (null: not yet)."),
    sa.PrimaryKeyConstraint('anonymous_ref')
    )
    op.create_index(op.f('ix_identity_links_customer_ref'), 'identity_links', ['customer_ref'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_identity_links_customer_ref'), table_name='identity_links')
    op.drop_table('identity_links')
