"""customer_profiles, customer_dates: the customer profile projection (omnicart.customers)

Revision ID: 0005_customer_profiles
Revises: 0004_customer_keys
Create Date: 2026-11-24 01:09:12.907942
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005_customer_profiles'
down_revision: str | Sequence[str] | None = '0004_customer_keys'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('customer_dates',
    sa.Column('customer_ref', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=10), nullable=True, comment='YYYY-MM-DD or --MM-DD; null once cleared.'),
    sa.Column('month_day', sa.String(length=5), nullable=True, comment='MM-DD, what a yearly trigger compares.'),
    sa.Column('day', sa.Date(), nullable=True, comment='The full date, when it has a year.'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('customer_ref', 'name')
    )
    with op.batch_alter_table('customer_dates', schema=None) as batch_op:
        batch_op.create_index('ix_customer_dates_day', ['name', 'day', 'customer_ref'], unique=False)
        batch_op.create_index('ix_customer_dates_month_day', ['name', 'month_day', 'customer_ref'], unique=False)

    op.create_table('customer_profiles',
    sa.Column('customer_ref', sa.String(length=200), nullable=False, comment='The id, or its keyed hash if personal.'),
    sa.Column('customer_id', sa.String(length=200), nullable=True, comment='Cleared by retention if personal.'),
    sa.Column('workflow_id', sa.String(length=300), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('email_hash', sa.String(length=40), nullable=True),
    sa.Column('email_at', sa.DateTime(timezone=True), nullable=True, comment='Time of the event that last stated it.'),
    sa.Column('phone', sa.String(length=16), nullable=True),
    sa.Column('phone_hash', sa.String(length=40), nullable=True),
    sa.Column('phone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consent_email', sa.Boolean(), nullable=True),
    sa.Column('consent_email_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consent_sms', sa.Boolean(), nullable=True),
    sa.Column('consent_sms_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consent_push', sa.Boolean(), nullable=True),
    sa.Column('consent_push_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locale', sa.String(length=64), nullable=True),
    sa.Column('locale_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('timezone_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_event_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_order_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dates', sa.JSON(), nullable=False, comment='{name: YYYY-MM-DD or --MM-DD}, a copy of customer_dates.'),
    sa.PrimaryKeyConstraint('customer_ref')
    )
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_profiles_email_hash'), ['email_hash'], unique=False)
        batch_op.create_index('ix_customer_profiles_last_order', ['last_order_at', 'customer_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_profiles_phone_hash'), ['phone_hash'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('customer_profiles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_profiles_phone_hash'))
        batch_op.drop_index('ix_customer_profiles_last_order')
        batch_op.drop_index(batch_op.f('ix_customer_profiles_email_hash'))

    op.drop_table('customer_profiles')
    with op.batch_alter_table('customer_dates', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_dates_month_day')
        batch_op.drop_index('ix_customer_dates_day')

    op.drop_table('customer_dates')
