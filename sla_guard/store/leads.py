"""Queries on leads: a lead's fields and owner, the read API's lists by status, one lead with
everything that happened to it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, EventRow, FollowUpTaskRow, LeadRow
from sla_guard.store.repository import LEAD_FIELDS

LEAD_STATUSES = ("overdue", "open", "closed")
"""The lists :func:`leads_by_status` makes: leads with a running clock past its deadline,
open leads, closed leads."""


def lead_fields(lead: LeadRow) -> dict:
    """The lead as routing, rules and alert texts read it: ``lead_id`` and every field of
    :data:`~sla_guard.store.repository.LEAD_FIELDS`."""
    return {"lead_id": lead.lead_id, **{name: getattr(lead, name) for name in LEAD_FIELDS}}


def lead_row(session: Session, lead_id: str) -> LeadRow | None:
    return session.get(LeadRow, lead_id)


def lead_owner(session: Session, lead_id: str) -> str | None:
    """The lead's owner now."""
    return session.execute(select(LeadRow.owner).where(LeadRow.lead_id == lead_id)).scalar()


def leads_by_status(
    session: Session, status: str, now: datetime, limit: int, offset: int
) -> tuple[Sequence[LeadRow], dict[str, list[ClockRow]]]:
    """A page of leads, newest first, and the running clocks of each (by lead id)."""
    statement = select(LeadRow)
    if status == "overdue":
        statement = statement.where(
            exists().where(ClockRow.lead_id == LeadRow.lead_id, ClockRow.stopped_at.is_(None), ClockRow.due_at <= now)
        )
    elif status == "open":
        statement = statement.where(LeadRow.status == "open")
    else:
        statement = statement.where(LeadRow.status != "open")
    statement = statement.order_by(LeadRow.created_at.desc(), LeadRow.lead_id).limit(limit).offset(offset)
    leads = session.execute(statement).scalars().all()
    running: dict[str, list[ClockRow]] = {}
    for clock in session.execute(
        select(ClockRow).where(ClockRow.lead_id.in_([lead.lead_id for lead in leads]), ClockRow.stopped_at.is_(None))
    ).scalars():
        running.setdefault(clock.lead_id, []).append(clock)
    return leads, running


@dataclass(frozen=True)
class LeadHistory:
    """A lead and everything recorded about it, each list oldest first."""

    lead: LeadRow
    events: Sequence[EventRow]
    clocks: Sequence[ClockRow]
    escalations: Sequence[EscalationRow]
    alerts: Sequence[AlertRow]
    tasks: Sequence[FollowUpTaskRow]


def lead_history(session: Session, lead_id: str) -> LeadHistory | None:
    lead = session.get(LeadRow, lead_id)
    if lead is None:
        return None

    def rows(model, *order):
        return session.execute(select(model).where(model.lead_id == lead_id).order_by(*order)).scalars().all()

    return LeadHistory(
        lead=lead,
        events=rows(EventRow, EventRow.occurred_at, EventRow.id),
        clocks=rows(ClockRow, ClockRow.started_at, ClockRow.id),
        escalations=rows(EscalationRow, EscalationRow.fired_at, EscalationRow.id),
        alerts=rows(AlertRow, AlertRow.id),
        tasks=rows(FollowUpTaskRow, FollowUpTaskRow.id),
    )
