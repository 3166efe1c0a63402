"""Queries and writes the app and the workers need; thin, no decisions of their own (the core
makes them: :func:`save_state` asks a :class:`ClockPlanner` when a clock fires next)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from sla_guard.core.clocks import ClockState, LeadState
from sla_guard.core.events import LeadEvent
from sla_guard.core.stays import Stay
from sla_guard.store.models import (
    ClockRow,
    EscalationRow,
    EventRow,
    FollowUpTaskRow,
    LeadRow,
    QuarantinedLeadRow,
    StageStayRow,
    UTCDateTime,
)
from sla_guard.store.statements import dialect_insert, first_of_each

LEAD_FIELDS = ("name", "source", "pipeline", "stage", "owner", "team", "priority", "amount", "url", "tags", "customer")
"""Lead attributes copied from the CRM's events onto the lead row."""


def event_rows(source: str, events: list[LeadEvent], received_at: datetime) -> tuple[list[dict], list[str]]:
    """Inbox rows for ``events``, and the ids of events repeated within them (duplicates)."""
    firsts, duplicates = first_of_each(events, lambda event: event.event_id)
    rows = [
        {
            "source": source,
            "event_id": event.event_id,
            "lead_id": event.lead.id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "received_at": received_at,
            "payload": event.to_json(),
        }
        for event in firsts
    ]
    return rows, duplicates


def event_time(session: Session, source: str, event_id: str) -> datetime | None:
    """When a stored event happened (``None``: no such event)."""
    return session.execute(
        select(EventRow.occurred_at).where(EventRow.source == source, EventRow.event_id == event_id)
    ).scalar()


INBOX_COLUMNS = ("source", "event_id", "lead_id", "type", "occurred_at", "received_at", "payload")

_PG_STORE_EVENTS = (
    f"INSERT INTO events ({', '.join(INBOX_COLUMNS)}) SELECT * FROM unnest(%s::varchar[], %s::varchar[], "
    "%s::varchar[], %s::varchar[], %s::timestamptz[], %s::timestamptz[], %s::text[]) "
    "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id"
)
"""One constant statement whatever the batch size (one array per column), so PostgreSQL and
the driver keep it prepared."""


def store_event_rows(connection: Connection, rows: list[dict]) -> set[tuple[str, str]]:
    """Insert inbox rows with one multi-row ``INSERT … ON CONFLICT DO NOTHING``; return the
    ``(source, event_id)`` of those stored now (the others were already there).

    The web's hot path: plain SQL, run on the connection without statement compilation."""
    if not rows:
        return set()
    if connection.dialect.name == "postgresql":
        result = connection.exec_driver_sql(
            _PG_STORE_EVENTS, tuple([row[name] for row in rows] for name in INBOX_COLUMNS)
        )
    else:
        stored_time = UTCDateTime().dialect_impl(connection.dialect).bind_processor(connection.dialect)
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
        result = connection.exec_driver_sql(
            f"INSERT INTO events ({', '.join(INBOX_COLUMNS)}) VALUES {values} "
            "ON CONFLICT (source, event_id) DO NOTHING RETURNING source, event_id",
            tuple(
                value
                for row in rows
                for value in (
                    row["source"],
                    row["event_id"],
                    row["lead_id"],
                    row["type"],
                    stored_time(row["occurred_at"]),
                    stored_time(row["received_at"]),
                    row["payload"],
                )
            ),
        )
    return {(source, event_id) for source, event_id in result}


def insert_events(session: Session, source: str, events: list[LeadEvent], received_at: datetime):
    """Store events in the inbox; return ``(accepted, duplicates)`` event ids.

    An event already stored (same source and ``event_id``), or repeated in the same batch, is a
    duplicate: acknowledged, never stored twice.
    """
    rows, duplicates = event_rows(source, events, received_at)
    stored = store_event_rows(session.connection(), rows)
    accepted = [row["event_id"] for row in rows if (source, row["event_id"]) in stored]
    duplicates.extend(row["event_id"] for row in rows if (source, row["event_id"]) not in stored)
    return accepted, duplicates


def lock_leads(session: Session, lead_ids: list[str], now: datetime) -> dict[str, LeadRow]:
    """The leads' rows, created if new, locked for this transaction in the order given (one
    statement: a multi-row upsert)."""
    if not lead_ids:
        return {}
    upsert = (
        dialect_insert(session, LeadRow)
        .values([{"lead_id": lead_id, "status": "open", "known": False, "updated_at": now} for lead_id in lead_ids])
        .on_conflict_do_update(index_elements=["lead_id"], set_={"updated_at": now})  # takes the row locks
        .returning(LeadRow)
    )
    rows = session.execute(
        select(LeadRow).from_statement(upsert), execution_options={"populate_existing": True}
    ).scalars()
    return {row.lead_id: row for row in rows}


def events_of_leads(session: Session, lead_ids: list[str]) -> dict[str, tuple[list[int], list[LeadEvent]]]:
    """All events of each of these leads, oldest first (ties in order of arrival), with their
    row ids, read in one query."""
    out: dict[str, tuple[list[int], list[LeadEvent]]] = {lead_id: ([], []) for lead_id in lead_ids}
    if lead_ids:
        rows = session.execute(
            select(EventRow.lead_id, EventRow.id, EventRow.payload)
            .where(EventRow.lead_id.in_(lead_ids))
            .order_by(EventRow.lead_id, EventRow.occurred_at, EventRow.id)
        )
        for row in rows:
            ids, events = out[row.lead_id]
            ids.append(row.id)
            events.append(LeadEvent.from_json(row.payload))
    return out


def mark_processed(session: Session, event_ids: list[int], now: datetime) -> None:
    if event_ids:
        table = EventRow.__table__
        session.connection().execute(
            update(table).where(table.c.id.in_(event_ids), table.c.processed_at.is_(None)).values(processed_at=now)
        )


def unprocessed_leads(session: Session, received_before: datetime, limit: int = 500) -> list[str]:
    """Leads with events still waiting to be applied (their processing job was lost), except
    quarantined leads: those wait for a retry (``sla-guard quarantine retry``, the API)."""
    rows = session.execute(
        select(EventRow.lead_id)
        .where(
            EventRow.processed_at.is_(None),
            EventRow.received_at <= received_before,
            EventRow.lead_id.not_in(select(QuarantinedLeadRow.lead_id)),
        )
        .group_by(EventRow.lead_id)
        .order_by(func.min(EventRow.id))
        .limit(limit)
    ).scalars()
    return list(rows)


def fired_levels(session: Session, clock_ids: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {clock_id: set() for clock_id in clock_ids}
    if clock_ids:
        for clock_id, level in session.execute(
            select(EscalationRow.clock_id, EscalationRow.level).where(EscalationRow.clock_id.in_(clock_ids))
        ):
            out[clock_id].add(level)
    return out


def clock_state(row: ClockRow) -> ClockState:
    return ClockState(
        row.name,
        row.cycle,
        row.rule_name,
        row.started_at,
        row.due_at,
        row.stopped_at,
        row.stop_reason,
        row.paused_at,
        timedelta(seconds=row.budget_used_s or 0.0),
        row.resumed_at,
    )


class ClockPlanner(Protocol):
    """The decisions :func:`save_state` asks for (made by the core: :class:`sla_guard.core.engine.ClockPlan`)."""

    version: str

    def next_fire(self, clock: ClockState, fired: set[int]) -> datetime | None: ...

    def dropped_reason(self, rule_name: str | None) -> str: ...


@dataclass(frozen=True)
class TimerChange:
    """A clock whose timer must be (re)armed at ``fire_at``, or disarmed when it is None."""

    clock_id: int
    lead_id: str
    fire_at: datetime | None
    previous: datetime | None


def save_states(
    session: Session, states: list[tuple[LeadRow, LeadState]], plan: ClockPlanner, now: datetime
) -> list[TimerChange]:
    """Write each replayed state onto its lead and the lead's clocks; return the timers to change.

    Set-based: the clocks of all these leads, and the levels they already fired, are read in one
    statement each, and everything is written in one flush (batched by the ORM)."""
    lead_ids = [lead.lead_id for lead, _state in states]
    with session.no_autoflush:
        existing: dict[str, dict[tuple[str, int], ClockRow]] = {lead_id: {} for lead_id in lead_ids}
        for row in session.execute(select(ClockRow).where(ClockRow.lead_id.in_(lead_ids))).scalars():
            existing[row.lead_id][(row.name, row.cycle)] = row
        known = [row.id for rows in existing.values() for row in rows.values()]
        fired = fired_levels(session, known) if known else {}
    moved = []
    for lead, state in states:
        _write_lead(lead, state, plan, now)
        moved += _write_clocks(session, lead.lead_id, state, plan, now, existing[lead.lead_id], fired)
    session.flush()
    return [TimerChange(row.id, row.lead_id, fire_at, previous) for row, fire_at, previous in moved]


def _write_lead(lead: LeadRow, state: LeadState, plan: ClockPlanner, now: datetime) -> None:
    for name in LEAD_FIELDS:
        setattr(lead, name, state.fields.get(name))
    lead.status = state.status
    lead.known = state.known
    lead.created_at = state.created_at
    lead.first_touch_at = state.first_touch_at
    lead.closed_at = state.closed_at
    lead.outcome = state.outcome
    lead.reason = state.reason
    if state.rule_name != lead.rule_name or lead.rule_version is None:
        lead.rule_version = plan.version if state.rule_name else None
    lead.rule_name = state.rule_name
    lead.last_event_at = state.last_event_at
    lead.updated_at = now


def _write_clocks(
    session: Session,
    lead_id: str,
    state: LeadState,
    plan: ClockPlanner,
    now: datetime,
    existing: dict[tuple[str, int], ClockRow],
    fired: dict[int, set[int]],
) -> list[tuple[ClockRow, datetime | None, datetime | None]]:
    """Bring the lead's clock rows in line with ``state`` (unflushed); return the rows whose next
    firing moved, with the new and the previous time."""
    wanted = {clock.key: clock for clock in state.clocks}
    for key, row in existing.items():
        if key not in wanted and row.stopped_at is None:
            row.stopped_at = now
            row.stop_reason = plan.dropped_reason(row.rule_name)
    rows = list(existing.values())
    for key, clock in wanted.items():
        row = existing.get(key)
        if row is not None and row.stopped_at is not None and row.stopped_at == clock.stopped_at:
            continue  # a finished clock keeps the rule and deadline it was judged by
        if row is None:
            row = ClockRow(lead_id=lead_id, name=clock.name, cycle=clock.cycle)
            session.add(row)
            rows.append(row)
        if clock.stopped_at is None or (row.rule_name, row.started_at, row.due_at) != (
            clock.rule_name,
            clock.started_at,
            clock.due_at,
        ):
            row.rule_version = plan.version
        row.rule_name, row.started_at, row.due_at = clock.rule_name, clock.started_at, clock.due_at
        row.stopped_at, row.stop_reason = clock.stopped_at, clock.stop_reason
        row.paused_at, row.resumed_at = clock.paused_at, clock.resumed_at
        row.budget_used_s = clock.budget_used.total_seconds()
    moved = []
    for row in rows:
        fire_at = plan.next_fire(clock_state(row), fired.get(row.id, set()) if row.id is not None else set())
        if fire_at != row.next_fire_at:
            moved.append((row, fire_at, row.next_fire_at))
            row.next_fire_at = fire_at
    return moved


def clocks_to_arm(session: Session, until: datetime, limit: int = 50_000) -> list[tuple[int, str, datetime]]:
    """Open clocks whose timer fires before ``until``: ``(clock_id, lead_id, next_fire_at)``."""
    return list(
        session.execute(
            select(ClockRow.id, ClockRow.lead_id, ClockRow.next_fire_at)
            .where(ClockRow.next_fire_at.is_not(None), ClockRow.next_fire_at <= until)
            .order_by(ClockRow.next_fire_at)
            .limit(limit)
        ).all()
    )


def closed_task_times(session: Session, task_ids: dict[str, set[str]]) -> dict[str, dict[str, datetime]]:
    """Lead id → CRM task id → when sla-guard closed that follow-up task, for the tasks of
    ``task_ids`` (by lead) it closed; one query for all the leads."""
    wanted = {lead_id: ids for lead_id, ids in task_ids.items() if ids}
    if not wanted:
        return {}
    out: dict[str, dict[str, datetime]] = {}
    for lead_id, task_id, closed_at in session.execute(
        select(FollowUpTaskRow.lead_id, FollowUpTaskRow.crm_task_id, FollowUpTaskRow.updated_at).where(
            FollowUpTaskRow.lead_id.in_(wanted),
            FollowUpTaskRow.status == "closed",
            FollowUpTaskRow.crm_task_id.in_(set().union(*wanted.values())),
        )
    ):
        if task_id in wanted[lead_id]:
            out.setdefault(lead_id, {})[task_id] = closed_at
    return out


STAY_COLUMNS = (
    "seq",
    "stage",
    "entered_at",
    "left_at",
    "left_how",
    "next_stage",
    "first_visit",
    "won_here",
    "lost_here",
)


def save_stays(session: Session, stays: dict[str, list[Stay]]) -> None:
    """Make each lead's stored stage stays equal its ``stays``, rewriting only from the first
    difference: the leads' rows are read in one query and written in one statement per kind."""
    if not stays:
        return
    table = StageStayRow.__table__
    connection = session.connection()
    stored: dict[str, list[tuple]] = {lead_id: [] for lead_id in stays}
    for row in connection.execute(
        select(table.c.lead_id, *[table.c[name] for name in STAY_COLUMNS])
        .where(table.c.lead_id.in_(list(stays)))
        .order_by(table.c.lead_id, table.c.seq)
    ):
        stored[row[0]].append(tuple(row[1:]))
    cuts, rows = [], []
    for lead_id, lead_stays in stays.items():
        old = stored[lead_id]
        new = [tuple(getattr(stay, name) for name in STAY_COLUMNS) for stay in lead_stays]
        first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), min(len(old), len(new)))
        if first < len(old):
            cuts.append({"cut_lead": lead_id, "cut_seq": first})
        rows += [{"lead_id": lead_id, **dict(zip(STAY_COLUMNS, row, strict=True))} for row in new[first:]]
    if cuts:
        connection.execute(
            table.delete().where(table.c.lead_id == bindparam("cut_lead"), table.c.seq >= bindparam("cut_seq")), cuts
        )
    if rows:
        connection.execute(table.insert(), rows)
