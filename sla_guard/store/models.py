"""Tables. The database is the source of truth: events, leads, clocks, escalations, alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sla_guard.core.bounds import ID_MAX

ID = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; sla-guard stores aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}
    """Every ``Mapped[datetime]`` column keeps aware UTC datetimes."""


Serial = Annotated[int, mapped_column(ID, primary_key=True, autoincrement=True)]
"""A table's own numbered primary key."""

RecordId = Annotated[str, mapped_column(String(ID_MAX))]
"""An id a CRM or sender gave (a lead's, an event's, a CRM record's or task's): as long as
:data:`~sla_guard.core.bounds.ID_MAX` lets an id be."""

CrmName = Annotated[str, mapped_column(String(32))]
"""The CRM or other webhook source a row came from or goes to (``bitrix24``, ``generic``)."""


class Attempts:
    """The columns of outgoing work tried until it succeeds (:mod:`sla_guard.outbox.base`): how
    many attempts were made, the last error, and until when the item is claimed or waits."""

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(2000))
    claimed_until: Mapped[datetime | None]


class OutboxColumns(Attempts):
    """:class:`Attempts` of an item with a status and a creation time."""

    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime]


class EventRow(Base):
    """The inbox: every accepted webhook event, once per (source, event_id)."""

    __tablename__ = "events"
    id: Mapped[Serial]
    source: Mapped[CrmName]
    event_id: Mapped[RecordId]
    lead_id: Mapped[RecordId]
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_events_source_event_id"),
        Index("ix_events_lead_occurred", "lead_id", "occurred_at"),
        Index("ix_events_processed_received", "processed_at", "received_at"),
    )


class LeadRow(Base):
    """A lead's current state, derived from its events."""

    __tablename__ = "leads"
    lead_id: Mapped[RecordId] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(2000))
    source: Mapped[str | None] = mapped_column(String(2000))
    pipeline: Mapped[str | None] = mapped_column(String(2000))
    stage: Mapped[str | None] = mapped_column(String(2000))
    owner: Mapped[str | None] = mapped_column(String(2000))
    team: Mapped[str | None] = mapped_column(String(2000))
    priority: Mapped[str | None] = mapped_column(String(2000))
    amount: Mapped[float | None] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(String(2000))
    tags: Mapped[list | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="open")
    known: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime | None]
    first_touch_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(2000))
    rule_name: Mapped[str | None] = mapped_column(String(200))
    rule_version: Mapped[str | None] = mapped_column(String(40))
    last_event_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    customer: Mapped[str | None] = mapped_column(String(2000))
    """The company or contact the lead is for (``lead.customer``): a customer's LTV sums its leads."""
    __table_args__ = (
        Index("ix_leads_created_at", "created_at"),
        # the marketing report finds a customer's won leads by it
        Index(
            "ix_leads_won_customer",
            "customer",
            postgresql_where=text("status = 'won'"),
            sqlite_where=text("status = 'won'"),
        ),
    )


FIRST_TOUCH_COLUMNS = ["id", "rule_name", "due_at", "stopped_at", "stop_reason", "paused_at"]
"""What the reports read of a first-touch clock (``ix_clocks_first_touch`` carries them)."""


class ClockRow(Base):
    """One cycle of one SLA clock of a lead; ``next_fire_at`` is when its timer must fire."""

    __tablename__ = "clocks"
    id: Mapped[Serial]
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    cycle: Mapped[int] = mapped_column(Integer, default=0)
    rule_name: Mapped[str] = mapped_column(String(200))
    rule_version: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime]
    due_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    paused_at: Mapped[datetime | None]
    resumed_at: Mapped[datetime | None]
    budget_used_s: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    next_fire_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("lead_id", "name", "cycle", name="uq_clocks_lead_name_cycle"),
        Index("ix_clocks_next_fire_at", "next_fire_at"),
        Index("ix_clocks_due_open", "stopped_at", "due_at"),
        # reports join each lead's first-touch clock and read only these columns
        Index(
            "ix_clocks_first_touch",
            "lead_id",
            postgresql_include=FIRST_TOUCH_COLUMNS,
            postgresql_where=text("name = 'first_touch'"),
            sqlite_where=text("name = 'first_touch'"),
        ),
    )


class EscalationRow(Base):
    """A warning or ladder rung that fired, recorded once per (clock, level)."""

    __tablename__ = "escalations"
    id: Mapped[Serial]
    clock_id: Mapped[int] = mapped_column(ForeignKey("clocks.id", ondelete="CASCADE"))
    lead_id: Mapped[RecordId] = mapped_column(index=True)
    level: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(60))
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime]
    owner: Mapped[str | None] = mapped_column(String(2000))
    reassigned_to: Mapped[str | None] = mapped_column(String(2000))
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(2000))
    __table_args__ = (UniqueConstraint("clock_id", "level", name="uq_escalations_clock_level"),)


class AlertRow(OutboxColumns, Base):
    """One delivery of an escalation to one channel for one recipient, with its outcome."""

    __tablename__ = "alerts"
    id: Mapped[Serial]
    escalation_id: Mapped[int] = mapped_column(ForeignKey("escalations.id", ondelete="CASCADE"))
    lead_id: Mapped[RecordId] = mapped_column(index=True)
    channel: Mapped[str] = mapped_column(String(200))
    recipient: Mapped[str] = mapped_column(String(2000), default="")
    role: Mapped[str | None] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("escalation_id", "channel", "recipient", name="uq_alerts_delivery"),
        Index("ix_alerts_status", "status"),
    )


class RuleVersionRow(Base):
    """Every version of the rules file that was loaded, by content hash."""

    __tablename__ = "rule_versions"
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    loaded_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)


class CrmRecordRow(Base):
    """The last state sla-guard saw of a CRM record, for CRMs whose webhooks only say "changed"."""

    __tablename__ = "crm_records"
    crm: Mapped[CrmName] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    record_id: Mapped[RecordId] = mapped_column(primary_key=True)
    data: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class CrmLookupRow(Attempts, Base):
    """A CRM notification whose details must be fetched over the CRM's REST API (Bitrix24)."""

    __tablename__ = "crm_lookups"
    id: Mapped[Serial]
    crm: Mapped[CrmName]
    lookup_key: Mapped[str] = mapped_column(String(300))
    method: Mapped[str] = mapped_column(String(100))
    record_id: Mapped[RecordId]
    event: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[datetime]
    received_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("crm", "lookup_key", name="uq_crm_lookups_key"),
        Index("ix_crm_lookups_done_received", "done_at", "received_at"),
    )


class FollowUpTaskRow(OutboxColumns, Base):
    """The task a follow-up step created for the lead's owner: in the CRM, or as an alert."""

    __tablename__ = "follow_up_tasks"
    id: Mapped[Serial]
    clock_id: Mapped[int] = mapped_column(ForeignKey("clocks.id", ondelete="CASCADE"), unique=True)
    lead_id: Mapped[RecordId] = mapped_column(index=True)
    crm: Mapped[CrmName | None]
    crm_task_id: Mapped[RecordId | None]
    owner: Mapped[str | None] = mapped_column(String(2000))
    text: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_follow_up_tasks_status", "status"),)


class DigestRow(OutboxColumns, Base):
    """A daily digest or weekly SLA summary for one recipient on one channel: once per period."""

    __tablename__ = "digests"
    id: Mapped[Serial]
    kind: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(200), default="")
    channel: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("kind", "period", "recipient", "channel", name="uq_digests_period"),
        Index("ix_digests_status", "status"),
    )


class OutboxItemRow(OutboxColumns, Base):
    """Outgoing work with no table of its own (a reassignment pushed to a CRM, an amoCRM loss-reason
    read, an ops alert): once per (kind, key), with its arguments, attempts and outcome."""

    __tablename__ = "outbox_items"
    id: Mapped[Serial]
    kind: Mapped[str] = mapped_column(String(40))
    item_key: Mapped[str] = mapped_column(String(300))
    args: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(40))
    done_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("kind", "item_key", name="uq_outbox_items_key"),
        Index("ix_outbox_items_kind_status", "kind", "status"),
    )


class QuarantinedLeadRow(Base):
    """A lead whose events failed to apply: set aside with the reason, so it blocks nobody else."""

    __tablename__ = "quarantined_leads"
    lead_id: Mapped[RecordId] = mapped_column(primary_key=True)
    error: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(2000))
    failures: Mapped[int] = mapped_column(Integer, default=1)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]


class StageStayRow(Base):
    """One stay of a lead in a stage: when it entered, when and how it left (funnel reports)."""

    __tablename__ = "stage_stays"
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[str] = mapped_column(String(2000))
    entered_at: Mapped[datetime]
    left_at: Mapped[datetime | None]
    left_how: Mapped[str | None] = mapped_column(String(20))
    next_stage: Mapped[str | None] = mapped_column(String(2000))
    # facts of the lead in this stage, whatever the stage order (sla_guard.core.stays.Stay)
    first_visit: Mapped[bool] = mapped_column(Boolean, server_default=false())
    won_here: Mapped[bool] = mapped_column(Boolean, server_default=false())
    lost_here: Mapped[bool] = mapped_column(Boolean, server_default=false())


class SpendRow(Base):
    """Marketing spend of one source in one calendar month (``2026-11``)."""

    __tablename__ = "spend"
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    source: Mapped[str] = mapped_column(String(1000), primary_key=True)
    amount: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime]


class UserRow(Base):
    """A person who signs in to the dashboard, with a role and (for managers) a team."""

    __tablename__ = "users"
    id: Mapped[Serial]
    name: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20))
    team: Mapped[str | None] = mapped_column(String(2000))
    locale: Mapped[str] = mapped_column(String(5), default="en")
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
