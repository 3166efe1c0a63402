"""quarantined leads

Revision ID: 0007_quarantined_leads
Revises: 0006_outbox
"""

import sqlalchemy as sa
from alembic import op

import sla_guard.store.models

revision = "0007_quarantined_leads"
down_revision = "0006_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_leads",
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("error", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_failed_at", sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
    )


def downgrade() -> None:
    op.drop_table("quarantined_leads")
