"""revenue insight: stage stays (backfilled from stored events), spend, users, lead customer

Revision ID: 0009_revenue_insight
Revises: 0008_lead_ids_with_source
Create Date: 2026-11-28 23:40:00
"""
from dataclasses import asdict
from itertools import groupby

from alembic import op
import sqlalchemy as sa
import sla_guard.store.models


revision = '0009_revenue_insight'
down_revision = '0008_lead_ids_with_source'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('customer', sa.String(length=2000), nullable=True))
        batch_op.create_index('ix_leads_created_at', ['created_at'], unique=False)
    stays = op.create_table('stage_stays',
    sa.Column('lead_id', sa.String(length=200), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=2000), nullable=False),
    sa.Column('entered_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('left_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('left_how', sa.String(length=20), nullable=True),
    sa.Column('next_stage', sa.String(length=2000), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.lead_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('lead_id', 'seq')
    )
    op.create_table('spend',
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('amount', sa.Float(), nullable=False),
    sa.Column('updated_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('month', 'source')
    )
    op.create_table('users',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=500), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('team', sa.String(length=2000), nullable=True),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('failed_sign_ins', sa.Integer(), server_default='0', nullable=False),
    sa.Column('locked_until', sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    _backfill_stays(stays)


def _backfill_stays(stays) -> None:
    """Every known lead's stage stays, from the events already stored (one pass, in batches)."""
    from sla_guard.core.events import LeadEvent
    from sla_guard.core.stays import stage_stays

    connection = op.get_bind()
    events = sa.table('events', sa.column('id'), sa.column('lead_id'), sa.column('occurred_at'), sa.column('payload'))
    leads = sa.table('leads', sa.column('lead_id'))
    known = sa.select(leads.c.lead_id)
    rows = connection.execute(
        sa.select(events.c.lead_id, events.c.payload)
        .where(events.c.lead_id.in_(known))
        .order_by(events.c.lead_id, events.c.occurred_at, events.c.id),
        execution_options={'stream_results': True, 'yield_per': BATCH},
    )
    batch = []
    for lead_id, group in groupby(rows, key=lambda row: row.lead_id):
        for stay in stage_stays([LeadEvent.from_json(row.payload) for row in group]):
            batch.append({'lead_id': lead_id, **asdict(stay)})
        if len(batch) >= BATCH:
            _insert(stays, batch)
            batch = []
    _insert(stays, batch)


def _insert(stays, batch) -> None:
    if batch:
        # interleaved with the streamed read: fine on one connection for SQLite and psycopg
        op.get_bind().execute(stays.insert(), batch)


def downgrade() -> None:
    op.drop_table('users')
    op.drop_table('spend')
    op.drop_table('stage_stays')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index('ix_leads_created_at')
        batch_op.drop_column('customer')
