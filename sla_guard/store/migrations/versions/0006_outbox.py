"""one outbox: outbox_items for work with no table of its own, claims on CRM look-ups

Revision ID: 0006_outbox
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

import sla_guard.store.models

revision = "0006_outbox"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("item_key", sa.String(length=300), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sla_guard.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("done_at", sla_guard.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "item_key", name="uq_outbox_items_key"),
    )
    op.create_index("ix_outbox_items_kind_status", "outbox_items", ["kind", "status"], unique=False)
    # A look-up not done is due at once after the upgrade: its wait was kept in Redis only.
    op.add_column("crm_lookups", sa.Column("claimed_until", sla_guard.store.models.UTCDateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("crm_lookups") as batch:
        batch.drop_column("claimed_until")
    op.drop_index("ix_outbox_items_kind_status", table_name="outbox_items")
    op.drop_table("outbox_items")
