"""customer_keys: each customer's wrapped data key

Revision ID: 0004_customer_keys
Revises: 0003_journey_registry
Create Date: 2026-11-24 00:52:13.876622
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004_customer_keys'
down_revision: str | Sequence[str] | None = '0003_journey_registry'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_keys',
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=300), nullable=False, comment='The workflow id the key encrypts.'),
    sa.Column('master_key_id', sa.String(length=64), nullable=False),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=False, comment='nonce + AES-GCM(master key, data key)'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_id'),
    sa.UniqueConstraint('owner')
    )


def downgrade() -> None:
    op.drop_table('customer_keys')
