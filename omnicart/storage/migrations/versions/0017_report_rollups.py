"""report_runs, report_step_counts, report_messages, report_conversions, report_exposures,
report_fold_state: the pre-summed report tables; journey_actions.folded, message_outcomes.folded
(omnicart.analytics.rollups). Existing rows start unfolded: the first fold sums them all.

Revision ID: 0017_report_rollups
Revises: 0016_identity
Create Date: 2026-11-24 09:32:07.610502
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017_report_rollups'
down_revision: str | Sequence[str] | None = '0016_identity'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('report_conversions',
    sa.Column('action_id', sa.String(length=64), nullable=False),
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('message_id', sa.String(length=200), nullable=True, comment='The credited message; null: none.'),
    sa.PrimaryKeyConstraint('action_id')
    )
    with op.batch_alter_table('report_conversions', schema=None) as batch_op:
        batch_op.create_index('ix_report_conversions_journey_entered_at', ['journey', 'entered_at'], unique=False)
        batch_op.create_index('ix_report_conversions_run', ['journey', 'customer_ref', 'run_id'], unique=False)

    op.create_table('report_exposures',
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='customer_ref(): no raw email or phone.'),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('experiment', sa.String(length=200), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False, comment="The run's first step row naming it."),
    sa.Column('variant', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('journey', 'customer_ref', 'run_id', 'experiment')
    )
    with op.batch_alter_table('report_exposures', schema=None) as batch_op:
        batch_op.create_index('ix_report_exposures_journey_entered_at', ['journey', 'entered_at'], unique=False)

    op.create_table('report_fold_state',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('folded_at', sa.DateTime(timezone=True), nullable=True, comment='When the last fold started.'),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('report_messages',
    sa.Column('message_key', sa.String(length=200), nullable=False,
              comment="The message id (a send without one: its row's)."),
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('unsent', sa.Boolean(), nullable=False, comment='Skipped when it went out (out_of_stock).'),
    sa.Column('delivered', sa.Boolean(), nullable=False),
    sa.Column('person_opened', sa.Boolean(), nullable=False),
    sa.Column('machine_opened', sa.Boolean(), nullable=False),
    sa.Column('clicked', sa.Boolean(), nullable=False),
    sa.Column('bounced', sa.Boolean(), nullable=False),
    sa.Column('failed', sa.Boolean(), nullable=False),
    sa.Column('unsubscribed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('message_key')
    )
    with op.batch_alter_table('report_messages', schema=None) as batch_op:
        batch_op.create_index('ix_report_messages_journey_entered_at', ['journey', 'entered_at', 'unsent', 'step',
                                'customer_ref', 'delivered', 'person_opened', 'machine_opened', 'clicked',
                                'bounced', 'failed', 'unsubscribed'], unique=False)
        batch_op.create_index('ix_report_messages_run', ['journey', 'customer_ref', 'run_id'], unique=False)

    op.create_table('report_runs',
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='customer_ref(): no raw email or phone.'),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.String(length=200), nullable=True),
    sa.Column('category', sa.String(length=20), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False,
              comment="The run's latest row: the report's category."),
    sa.Column('holdout', sa.Boolean(), nullable=False, comment='Any row of the run held out.'),
    sa.Column('last_step', sa.String(length=200), nullable=True,
              comment='Its latest step row: where it waits if not exited.'),
    sa.Column('last_step_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exits', sa.Integer(), nullable=False),
    sa.Column('exit_reason', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('journey', 'customer_ref', 'run_id')
    )
    with op.batch_alter_table('report_runs', schema=None) as batch_op:
        batch_op.create_index('ix_report_runs_journey_entered_at', ['journey', 'entered_at', 'customer_ref', 'holdout',
                                'exits', 'exit_reason', 'last_step'], unique=False)

    op.create_table('report_step_counts',
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='customer_ref(): no raw email or phone.'),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('step', sa.String(length=200), nullable=False),
    sa.Column('reached', sa.Integer(), nullable=False, comment='Its step, send, skip and hold rows.'),
    sa.Column('held', sa.Integer(), nullable=False),
    sa.Column('skipped', sa.Integer(), nullable=False),
    sa.Column('skip_reason', sa.String(length=200), nullable=False, comment="'' on the row of reached and held."),
    sa.PrimaryKeyConstraint('journey', 'customer_ref', 'run_id', 'step', 'skip_reason')
    )
    with op.batch_alter_table('report_step_counts', schema=None) as batch_op:
        batch_op.create_index('ix_report_step_counts_journey_entered_at', ['journey', 'entered_at', 'step',
                                'skip_reason', 'held', 'skipped'], unique=False)

    with op.batch_alter_table('journey_actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folded', sa.Boolean(), server_default=sa.false(), nullable=False,
                  comment='Summed into the report tables yet (omnicart.analytics.rollups).'))
        batch_op.create_index(batch_op.f('ix_journey_actions_folded'), ['folded'], unique=False)

    with op.batch_alter_table('message_outcomes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('folded', sa.Boolean(), server_default=sa.false(), nullable=False,
                  comment='Summed into the report tables yet (omnicart.analytics.rollups).'))
        batch_op.create_index(batch_op.f('ix_message_outcomes_folded'), ['folded'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('message_outcomes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_outcomes_folded'))
        batch_op.drop_column('folded')

    with op.batch_alter_table('journey_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journey_actions_folded'))
        batch_op.drop_column('folded')

    with op.batch_alter_table('report_step_counts', schema=None) as batch_op:
        batch_op.drop_index('ix_report_step_counts_journey_entered_at')

    op.drop_table('report_step_counts')
    with op.batch_alter_table('report_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_report_runs_journey_entered_at')

    op.drop_table('report_runs')
    with op.batch_alter_table('report_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_report_messages_run')
        batch_op.drop_index('ix_report_messages_journey_entered_at')

    op.drop_table('report_messages')
    op.drop_table('report_fold_state')
    with op.batch_alter_table('report_exposures', schema=None) as batch_op:
        batch_op.drop_index('ix_report_exposures_journey_entered_at')

    op.drop_table('report_exposures')
    with op.batch_alter_table('report_conversions', schema=None) as batch_op:
        batch_op.drop_index('ix_report_conversions_run')
        batch_op.drop_index('ix_report_conversions_journey_entered_at')

    op.drop_table('report_conversions')
