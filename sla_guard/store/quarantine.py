"""Queries of the quarantine: leads whose events failed to apply, set aside with the reason."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sla_guard.store.models import EventRow, QuarantinedLeadRow


def quarantine(session: Session, lead_id: str, error: str, reason: str, now: datetime) -> None:
    """Record (or count again) a failure to apply ``lead_id``'s events."""
    insert = postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
    table = QuarantinedLeadRow.__table__
    statement = insert(table).values(
        lead_id=lead_id, error=error, reason=reason, failures=1, first_failed_at=now, last_failed_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["lead_id"],
            set_={
                "error": statement.excluded.error,
                "reason": statement.excluded.reason,
                "failures": table.c.failures + 1,
                "last_failed_at": statement.excluded.last_failed_at,
            },
        )
    )


def release(session: Session, lead_ids: list[str]) -> list[str]:
    """Take ``lead_ids`` out of quarantine; return those that were in it."""
    if not lead_ids:
        return []
    table = QuarantinedLeadRow.__table__
    result = session.execute(delete(table).where(table.c.lead_id.in_(lead_ids)).returning(table.c.lead_id))
    return list(result.scalars())


def quarantined(session: Session, limit: int = 1000) -> list[tuple[QuarantinedLeadRow, int]]:
    """Quarantined leads, most recent failure first, each with how many events wait for it."""
    waiting = (
        select(func.count())
        .where(EventRow.lead_id == QuarantinedLeadRow.lead_id, EventRow.processed_at.is_(None))
        .scalar_subquery()
    )
    rows = session.execute(
        select(QuarantinedLeadRow, waiting).order_by(QuarantinedLeadRow.last_failed_at.desc()).limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def quarantined_ids(session: Session) -> list[str]:
    return list(session.execute(select(QuarantinedLeadRow.lead_id).order_by(QuarantinedLeadRow.lead_id)).scalars())
