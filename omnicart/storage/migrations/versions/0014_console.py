"""console_users, console_sessions, console_audit: the marketer's console (omnicart.console)

Revision ID: 0014_console
Revises: 0013_whatsapp
Create Date: 2026-11-24 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0014_console'
down_revision: str | Sequence[str] | None = '0013_whatsapp'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('console_users',
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=300), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )
    op.create_table('console_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False, comment="SHA-256 of the cookie's token."),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['username'], ['console_users.username'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_sessions_expires_at'), ['expires_at'], unique=False)
    op.create_table('console_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('username', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=40), nullable=False, comment='published, paused, resumed, test_send'),
    sa.Column('journey', sa.String(length=200), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('console_audit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_audit_journey'), ['journey'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('console_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_audit_journey'))
    op.drop_table('console_audit')
    with op.batch_alter_table('console_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_sessions_expires_at'))
    op.drop_table('console_sessions')
    op.drop_table('console_users')
