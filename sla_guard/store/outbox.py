"""Queries of the outbox tables: the rows of everything sla-guard sends.

Every kind's table (``alerts``, ``digests``, ``follow_up_tasks``, ``crm_lookups``,
``outbox_items``) is claimed, tried and finished here; which rows a kind counts as open, free or
due is the kind's own definition (:mod:`sla_guard.outbox.base`), handed in as conditions. A new
alert is written with its escalation (:mod:`sla_guard.store.escalations`), a new digest with the
digests' queries (:mod:`sla_guard.store.digests`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.store.models import ClockRow, FollowUpTaskRow, OutboxItemRow
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
