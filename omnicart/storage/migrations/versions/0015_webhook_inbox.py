"""webhook_inbox: provider webhooks stored before they are applied (omnicart.api.webhook_inbox)

Revision ID: 0015_webhook_inbox
Revises: 0014_console
Create Date: 2026-11-24 06:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0015_webhook_inbox'
down_revision: str | Sequence[str] | None = '0014_console'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_inbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False, comment='sendgrid or twilio'),
    sa.Column('kind', sa.String(length=32), nullable=False, comment='Which webhook: which applier reads the body.'),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('query', sa.Text(), nullable=False,
              comment="The URL's query string (Twilio's status callback carries ours)."),
    sa.Column('body', sa.LargeBinary(), nullable=False, comment='The verified request body; emptied once applied.'),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True,
              comment='When it reached the journeys; NULL while pending.'),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True, comment='The last failure to apply it (no personal data).'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_inbox', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_inbox_pending', ['applied_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_inbox_pending')

    op.drop_table('webhook_inbox')
