"""date_trigger_coverage: where the date-triggers schedule's next run starts after an outage (omnicart.date_coverage)

Revision ID: 0009_date_coverage
Revises: 0008_date_triggers
Create Date: 2026-11-24 05:51:25.880554
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_date_coverage'
down_revision: str | Sequence[str] | None = '0008_date_triggers'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('date_trigger_coverage',
    sa.Column('schedule_id', sa.String(length=200), nullable=False),
    sa.Column('covered_until', sa.DateTime(timezone=True), nullable=False,
              comment='Every due moment up to here was delivered by a finished run.'),
    sa.PrimaryKeyConstraint('schedule_id')
    )


def downgrade() -> None:
    op.drop_table('date_trigger_coverage')
