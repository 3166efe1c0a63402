"""reports: an index of first-touch clocks carrying what the reports read of them

Revision ID: 0010_reports_first_touch_index
Revises: 0009_revenue_insight
Create Date: 2026-11-29 02:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0010_reports_first_touch_index'
down_revision = '0009_revenue_insight'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.create_index(
            'ix_clocks_first_touch',
            ['lead_id'],
            unique=False,
            postgresql_include=['id', 'rule_name', 'due_at', 'stopped_at', 'stop_reason', 'paused_at'],
            postgresql_where=sa.text("name = 'first_touch'"),
            sqlite_where=sa.text("name = 'first_touch'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('clocks', schema=None) as batch_op:
        batch_op.drop_index('ix_clocks_first_touch')
