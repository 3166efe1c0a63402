"""funnel: each stage stay carries the lead's facts in that stage (first visit, won, lost there)

Revision ID: 0012_funnel_stay_facts
Revises: 0011_reports_won_customer_index
Create Date: 2026-11-29 03:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0012_funnel_stay_facts'
down_revision = '0011_reports_won_customer_index'
branch_labels = None
depends_on = None

COLUMNS = ('first_visit', 'won_here', 'lost_here')

# set-based, one statement over the stays grouped by (lead, stage); the same facts
# sla_guard.core.stays.stage_stays computes for stays written from now on
BACKFILL = """
UPDATE stage_stays SET
    first_visit = (stage_stays.seq = facts.first_seq),
    won_here = (facts.won = 1),
    lost_here = (facts.lost = 1)
FROM (
    SELECT lead_id, stage, MIN(seq) AS first_seq,
           MAX(CASE WHEN left_how = 'won' THEN 1 ELSE 0 END) AS won,
           MAX(CASE WHEN left_how = 'lost' THEN 1 ELSE 0 END) AS lost
    FROM stage_stays
    GROUP BY lead_id, stage
) AS facts
WHERE facts.lead_id = stage_stays.lead_id AND facts.stage = stage_stays.stage
"""


def upgrade() -> None:
    with op.batch_alter_table('stage_stays', schema=None) as batch_op:
        for name in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute(BACKFILL)


def downgrade() -> None:
    with op.batch_alter_table('stage_stays', schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
