"""Counts read at scrape time for ``/metrics``: clocks, escalations, alerts, timer lag, backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, EventRow, QuarantinedLeadRow


@dataclass(frozen=True)
class OperatingCounts:
    open_clocks: int
    overdue_clocks: int
    escalations_by_kind: list
    alerts_by_status: list
    oldest_due_timer: datetime | None
    """``next_fire_at`` of the oldest timer that is due (None when none is)."""
    unprocessed_events: int
    """Accepted events waiting to be applied; a quarantined lead's are counted with it instead."""
    quarantined_leads: int


def operating_counts(session: Session, now: datetime) -> OperatingCounts:
    open_clocks = session.execute(select(func.count()).where(ClockRow.stopped_at.is_(None))).scalar()
    overdue = session.execute(
        select(func.count()).where(ClockRow.stopped_at.is_(None), ClockRow.due_at <= now)
    ).scalar()
    return OperatingCounts(
        open_clocks=open_clocks or 0,
        overdue_clocks=overdue or 0,
        escalations_by_kind=list(
            session.execute(select(EscalationRow.kind, func.count()).group_by(EscalationRow.kind)).all()
        ),
        alerts_by_status=list(session.execute(select(AlertRow.status, func.count()).group_by(AlertRow.status)).all()),
        oldest_due_timer=session.execute(
            select(func.min(ClockRow.next_fire_at)).where(ClockRow.next_fire_at <= now)
        ).scalar(),
        unprocessed_events=session.execute(
            select(func.count()).where(
                EventRow.processed_at.is_(None),
                EventRow.lead_id.not_in(select(QuarantinedLeadRow.lead_id)),
            )
        ).scalar()
        or 0,
        quarantined_leads=session.execute(select(func.count()).select_from(QuarantinedLeadRow)).scalar() or 0,
    )
