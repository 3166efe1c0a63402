"""Queries on escalations and their alerts: recording one escalation per (clock, level) and its
alerts, reassignments, acknowledgements."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.store.models import AlertRow, ClockRow, EscalationRow
from sla_guard.store.statements import dialect_insert


class NewEscalation(NamedTuple):
    """An escalation to record: the clock reached ``level`` (its step was due at ``due_at``)."""

    clock_id: int
    lead_id: str
    level: int
    kind: str
    due_at: datetime
    fired_at: datetime
    owner: str | None


def record_escalations(session: Session, escalations: list[NewEscalation]) -> dict[tuple[int, int], int]:
    """Record each (clock, level) not recorded before, with one statement; the ids of those
    recorded now, by ``(clock_id, level)`` (a level already recorded is left out)."""
    if not escalations:
        return {}
    rows = session.execute(
        dialect_insert(session, EscalationRow)
        .values([escalation._asdict() for escalation in escalations])
        .on_conflict_do_nothing(index_elements=["clock_id", "level"])
        .returning(EscalationRow.id, EscalationRow.clock_id, EscalationRow.level)
    )
    return {(row.clock_id, row.level): row.id for row in rows}


def set_reassigned(session: Session, escalation_id: int, new_owner: str) -> None:
    session.execute(update(EscalationRow).where(EscalationRow.id == escalation_id).values(reassigned_to=new_owner))


def acknowledge(
    session: Session, escalation_id: int, by: str | None, now: datetime
) -> tuple[bool, EscalationRow | None]:
    """Mark the escalation acknowledged by ``by`` unless it already was: ``(changed now, its row)``."""
    changed = session.execute(
        update(EscalationRow)
        .where(EscalationRow.id == escalation_id, EscalationRow.acknowledged_at.is_(None))
        .values(acknowledged_at=now, acknowledged_by=by)
    ).rowcount
    row = session.execute(select(EscalationRow).where(EscalationRow.id == escalation_id)).scalar()
    return bool(changed), row


def acknowledged_clocks(session: Session, clock_ids: list[int]) -> set[int]:
    """Those of ``clock_ids`` of which any level has been acknowledged."""
    if not clock_ids:
        return set()
    return set(
        session.execute(
            select(EscalationRow.clock_id)
            .where(EscalationRow.clock_id.in_(clock_ids), EscalationRow.acknowledged_at.is_not(None))
            .distinct()
        ).scalars()
    )


def clock_leads(session: Session, clock_ids: list[int]) -> dict[int, str]:
    """The lead each of ``clock_ids`` belongs to (clocks that do not exist are left out)."""
    if not clock_ids:
        return {}
    return dict(session.execute(select(ClockRow.id, ClockRow.lead_id).where(ClockRow.id.in_(clock_ids))).all())


def reload_clocks(session: Session, clock_ids: list[int]) -> dict[int, ClockRow]:
    """The clocks' rows as the database holds them now (call it after locking their leads)."""
    if not clock_ids:
        return {}
    rows = session.execute(
        select(ClockRow).where(ClockRow.id.in_(clock_ids)).execution_options(populate_existing=True)
    ).scalars()
    return {row.id: row for row in rows}


def reload_clock(session: Session, clock_id: int) -> ClockRow:
    """The clock's row as the database holds it now (call it after locking its lead)."""
    return reload_clocks(session, [clock_id])[clock_id]


def first_escalation(session: Session, clock_id: int) -> EscalationRow:
    """The level-0 escalation of a clock (a follow-up step's own)."""
    return session.execute(
        select(EscalationRow).where(EscalationRow.clock_id == clock_id, EscalationRow.level == 0)
    ).scalar_one()


def insert_alert(
    session: Session,
    *,
    escalation_id: int,
    lead_id: str,
    channel: str,
    recipient: str | None,
    role: str | None,
    now: datetime,
    not_before: datetime | None = None,
) -> AlertRow:
    """A new pending alert row (its payload written once its id is known), flushed for its id."""
    alert = AlertRow(
        escalation_id=escalation_id,
        lead_id=lead_id,
        channel=channel,
        recipient=recipient or "",
        role=role,
        payload="{}",
        status="pending",
        attempts=0,
        created_at=now,
        claimed_until=not_before,
    )
    session.add(alert)
    session.flush()
    return alert


def alert_exists(session: Session, escalation_id: int, channel: str, recipient: str | None) -> bool:
    """Whether the escalation has its alert on ``channel`` for ``recipient`` already."""
    return (
        session.execute(
            select(AlertRow.id).where(
                AlertRow.escalation_id == escalation_id,
                AlertRow.channel == channel,
                AlertRow.recipient == (recipient or ""),
            )
        ).scalar()
        is not None
    )
