"""clock pauses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:48:57.593423
"""
from alembic import op
import sqlalchemy as sa
import sla_guard.store.models


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resumed_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('budget_used_s', sa.Float(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_column('budget_used_s')
        batch_op.drop_column('resumed_at')
        batch_op.drop_column('paused_at')

