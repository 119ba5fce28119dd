"""quarantined inputs: the operators' list of what customers' workflows set aside

Revision ID: 0002_quarantined_inputs
Revises: 0001_baseline
Create Date: 2026-11-24 00:38:10.331960
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_quarantined_inputs'
down_revision: str | Sequence[str] | None = '0001_baseline'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'quarantined_inputs',
        sa.Column('workflow_id', sa.String(length=300), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('event_id', sa.String(length=200), nullable=True),
        sa.Column('event_type', sa.String(length=100), nullable=True),
        sa.Column('run_id', sa.String(length=200), nullable=True),
        sa.Column('journey', sa.String(length=200), nullable=True),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('quarantined_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('replayed_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('workflow_id', 'seq'),
    )


def downgrade() -> None:
    op.drop_table('quarantined_inputs')
