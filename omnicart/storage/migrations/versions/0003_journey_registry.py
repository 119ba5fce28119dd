"""journey registry: versions, the published set and its history

Revision ID: 0003_journey_registry
Revises: 0002_quarantined_inputs
Create Date: 2026-11-24 00:45:15.233680
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003_journey_registry'
down_revision: str | Sequence[str] | None = '0002_quarantined_inputs'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('journey_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('change', sa.String(length=20), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('journey_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journey_changes_name'), ['name'], unique=False)

    op.create_table('journey_versions',
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('bundle', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    with op.batch_alter_table('journey_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journey_versions_name'), ['name'], unique=False)

    op.create_table('published_journeys',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['version'], ['journey_versions.version'], ),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('published_journeys')
    with op.batch_alter_table('journey_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_versions_name'))

    op.drop_table('journey_versions')
    with op.batch_alter_table('journey_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_changes_name'))

    op.drop_table('journey_changes')
