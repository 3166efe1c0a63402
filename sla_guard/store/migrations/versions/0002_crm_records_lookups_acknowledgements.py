"""crm records, lookups, acknowledgements

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:46:56.954976
"""
from alembic import op
import sqlalchemy as sa
import sla_guard.store.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crm_lookups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('crm', sa.String(length=32), nullable=False),
    sa.Column('lookup_key', sa.String(length=300), nullable=False),
    sa.Column('method', sa.String(length=100), nullable=False),
    sa.Column('record_id', sa.String(length=200), nullable=False),
    sa.Column('event', sa.String(length=100), nullable=False),
    sa.Column('sent_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=2000), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('crm', 'lookup_key', name='uq_crm_lookups_key')
    )
    with op.batch_alter_table('crm_lookups', schema=None) as batch_op:
        batch_op.create_index('ix_crm_lookups_done_received', ['done_at', 'received_at'], unique=False)

    op.create_table('crm_records',
    sa.Column('crm', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=200), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('updated_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('crm', 'kind', 'record_id')
    )
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acknowledged_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_by', sa.String(length=2000), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_column('acknowledged_by')
        batch_op.drop_column('acknowledged_at')

    op.drop_table('crm_records')
    with op.batch_alter_table('crm_lookups', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_lookups_done_received')

    op.drop_table('crm_lookups')
