"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 12:22:31.475343
"""
from alembic import op
import sqlalchemy as sa
import sla_guard.store.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('occurred_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('processed_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'event_id', name='uq_events_source_event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_lead_occurred', ['lead_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_events_processed_received', ['processed_at', 'received_at'], unique=False)

    op.create_table('leads',
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=2000), nullable=True),
    sa.Column('source', sa.String(length=2000), nullable=True),
    sa.Column('pipeline', sa.String(length=2000), nullable=True),
    sa.Column('stage', sa.String(length=2000), nullable=True),
    sa.Column('owner', sa.String(length=2000), nullable=True),
    sa.Column('team', sa.String(length=2000), nullable=True),
    sa.Column('priority', sa.String(length=2000), nullable=True),
    sa.Column('amount', sa.Float(), nullable=True),
    sa.Column('url', sa.String(length=2000), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('known', sa.Boolean(), nullable=False),
    sa.Column('created_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('first_touch_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=2000), nullable=True),
    sa.Column('rule_name', sa.String(length=200), nullable=True),
    sa.Column('rule_version', sa.String(length=40), nullable=True),
    sa.Column('last_event_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('lead_id')
    )
    op.create_table('rule_versions',
    sa.Column('version', sa.String(length=40), nullable=False),
    sa.Column('loaded_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('version')
    )
    op.create_table('clocks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('cycle', sa.Integer(), nullable=False),
    sa.Column('rule_name', sa.String(length=200), nullable=False),
    sa.Column('rule_version', sa.String(length=40), nullable=True),
    sa.Column('started_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stopped_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stop_reason', sa.String(length=40), nullable=True),
    sa.Column('next_fire_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.lead_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lead_id', 'name', 'cycle', name='uq_clocks_lead_name_cycle')
    )
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.create_index('ix_clocks_due_open', ['stopped_at', 'due_at'], unique=False)
        batch_op.create_index('ix_clocks_next_fire_at', ['next_fire_at'], unique=False)

    op.create_table('escalations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('clock_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=60), nullable=False),
    sa.Column('due_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('fired_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('owner', sa.String(length=2000), nullable=True),
    sa.Column('reassigned_to', sa.String(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['clock_id'], ['clocks.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('clock_id', 'level', name='uq_escalations_clock_level')
    )
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_escalations_lead_id'), ['lead_id'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('escalation_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('channel', sa.String(length=200), nullable=False),
    sa.Column('recipient', sa.String(length=2000), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=True),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=2000), nullable=True),
    sa.Column('created_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_until', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['escalation_id'], ['escalations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('escalation_id', 'channel', 'recipient', name='uq_alerts_delivery')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_alerts_status', ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_status')
        batch_op.drop_index(batch_op.f('ix_alerts_lead_id'))

    op.drop_table('alerts')
    with op.batch_alter_table('escalations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_escalations_lead_id'))

    op.drop_table('escalations')
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_index('ix_clocks_next_fire_at')
        batch_op.drop_index('ix_clocks_due_open')

    op.drop_table('clocks')
    op.drop_table('rule_versions')
    op.drop_table('leads')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_processed_received')
        batch_op.drop_index('ix_events_lead_occurred')

    op.drop_table('events')
