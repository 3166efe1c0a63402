"""Queries of escalations and of the outbox tables: what a clock owes, and the rows of
everything sla-guard sends.

An escalation is recorded once per (clock, level), with its alerts, in the transaction that
fires the clock; reassignments and acknowledgements are marked on it.

Every kind's table (``alerts``, ``digests``, ``follow_up_tasks``, ``crm_lookups``,
``outbox_items``) is claimed, tried and finished here; which rows a kind counts as open, free or
due is the kind's own definition (:mod:`sla_guard.outbox.base`), handed in as conditions. A new
digest is written with the digests' queries (:mod:`sla_guard.store.digests`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, FollowUpTaskRow, OutboxItemRow
from sla_guard.store.statements import dialect_insert

ITEM_KEY_MAX = 300
"""Longest key of an ``outbox_items`` row."""


# --- every kind's table ----------------------------------------------------------------------


def due_items(session: Session, model, where: tuple, limit: int) -> list[tuple[int, int]]:
    """``(id, attempts so far)`` of the rows meeting ``where``, oldest first."""
    statement = select(model.id, model.attempts).where(*where).order_by(model.id).limit(limit)
    return [tuple(row) for row in session.execute(statement)]


def claim_item(session: Session, model, item_id: int, where: tuple, values: dict) -> Any | None:
    """Set ``values`` on the row when it meets ``where`` (one conditional ``UPDATE``, so two
    workers never hold one row); the row as it is now, or ``None``."""
    return session.execute(
        select(model).from_statement(
            update(model).where(model.id == item_id, *where).values(**values).returning(model)
        ),
        execution_options={"populate_existing": True},
    ).scalar_one_or_none()


def set_item(session: Session, model, item_id: int, **values) -> None:
    session.execute(update(model).where(model.id == item_id).values(**values))


# --- outbox_items ----------------------------------------------------------------------------


def add_item(
    session: Session, kind: str, key: str, args: str, now: datetime, not_before: datetime | None = None
) -> int | None:
    """Record an item of ``kind`` once per ``key``; its id, or ``None`` when the key was recorded before."""
    return session.execute(
        dialect_insert(session, OutboxItemRow)
        .values(
            kind=kind,
            item_key=key[:ITEM_KEY_MAX],
            args=args,
            status="pending",
            attempts=0,
            created_at=now,
            claimed_until=not_before,
        )
        .on_conflict_do_nothing(index_elements=["kind", "item_key"])
        .returning(OutboxItemRow.id)
    ).scalar()


def item_id(session: Session, kind: str, key: str) -> int:
    """The id of the item of ``kind`` recorded under ``key``."""
    return session.execute(
        select(OutboxItemRow.id).where(OutboxItemRow.kind == kind, OutboxItemRow.item_key == key[:ITEM_KEY_MAX])
    ).scalar_one()


def item(session: Session, item_id: int) -> OutboxItemRow | None:
    return session.get(OutboxItemRow, item_id)


# --- follow_up_tasks -------------------------------------------------------------------------


def insert_follow_up_task(session: Session, **values) -> int:
    """A new pending follow-up task row; its id."""
    row = FollowUpTaskRow(status="pending", attempts=0, **values)
    session.add(row)
    session.flush()
    return row.id


def of_ended_clocks():
    """The condition "the task's follow-up step has ended" (its clock stopped)."""
    return FollowUpTaskRow.clock_id.in_(select(ClockRow.id).where(ClockRow.stopped_at.is_not(None)))


# --- escalations and their alerts ------------------------------------------------------------


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


def acknowledge_escalation(
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
