"""follow-up tasks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:55:39.019304
"""
from alembic import op
import sqlalchemy as sa
import sla_guard.store.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('follow_up_tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('clock_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('crm', sa.String(length=32), nullable=True),
    sa.Column('crm_task_id', sa.String(length=200), nullable=True),
    sa.Column('owner', sa.String(length=2000), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('due_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=2000), nullable=True),
    sa.Column('created_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['clock_id'], ['clocks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('clock_id')
    )
    with op.batch_alter_table('follow_up_tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follow_up_tasks_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_follow_up_tasks_status', ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('follow_up_tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_follow_up_tasks_status')
        batch_op.drop_index(batch_op.f('ix_follow_up_tasks_lead_id'))

    op.drop_table('follow_up_tasks')
