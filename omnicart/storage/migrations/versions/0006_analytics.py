"""journey_actions, message_outcomes: analytics (omnicart.analytics)

Revision ID: 0006_analytics
Revises: 0005_customer_profiles
Create Date: 2026-11-24 02:58:01.983042
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_analytics'
down_revision: str | Sequence[str] | None = '0005_customer_profiles'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('journey_actions',
    sa.Column('action_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='customer_ref(): no raw email or phone.'),
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=200), nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=True),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=20), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=True),
    sa.Column('template', sa.String(length=200), nullable=True),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('message_id', sa.String(length=200), nullable=True, comment="A send's; a conversion's credited."),
    sa.Column('experiment', sa.String(length=200), nullable=True),
    sa.Column('variant', sa.String(length=200), nullable=True),
    sa.Column('holdout', sa.String(length=10), nullable=True),
    sa.PrimaryKeyConstraint('action_id')
    )
    with op.batch_alter_table('journey_actions', schema=None) as batch_op:
        batch_op.create_index('ix_journey_actions_customer_ref', ['customer_ref'], unique=False)
        batch_op.create_index('ix_journey_actions_journey_at', ['journey', 'at'], unique=False)
        batch_op.create_index('ix_journey_actions_message_id', ['message_id'], unique=False)

    op.create_table('message_outcomes',
    sa.Column('outcome_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=200), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('machine', sa.Boolean(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=True),
    sa.PrimaryKeyConstraint('outcome_id')
    )
    with op.batch_alter_table('message_outcomes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_outcomes_message_id'), ['message_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('message_outcomes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_outcomes_message_id'))

    op.drop_table('message_outcomes')
    with op.batch_alter_table('journey_actions', schema=None) as batch_op:
        batch_op.drop_index('ix_journey_actions_message_id')
        batch_op.drop_index('ix_journey_actions_journey_at')
        batch_op.drop_index('ix_journey_actions_customer_ref')

    op.drop_table('journey_actions')
