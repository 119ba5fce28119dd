"""customer_profiles: WhatsApp consent, its own column (never implied by SMS consent)

Revision ID: 0013_whatsapp
Revises: 0012_fanout
Create Date: 2026-11-24 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013_whatsapp'
down_revision: str | Sequence[str] | None = '0012_fanout'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consent_whatsapp', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('consent_whatsapp_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.drop_column('consent_whatsapp_at')
        batch_op.drop_column('consent_whatsapp')
