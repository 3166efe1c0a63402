"""reports: an index of won leads by customer (the marketing report's lifetime value)

Revision ID: 0011_reports_won_customer_index
Revises: 0010_reports_first_touch_index
Create Date: 2026-11-29 02:50:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0011_reports_won_customer_index'
down_revision = '0010_reports_first_touch_index'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(
            'ix_leads_won_customer',
            ['customer'],
            unique=False,
            postgresql_where=sa.text("status = 'won'"),
            sqlite_where=sa.text("status = 'won'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index('ix_leads_won_customer')
