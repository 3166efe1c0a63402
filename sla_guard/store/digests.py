"""Queries of the digests: the overdue clocks a daily digest lists, the escalations a weekly
summary counts, and the ``digests`` rows, once per (kind, period, recipient, channel)."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.store.models import ClockRow, DigestRow, EscalationRow, LeadRow
from sla_guard.store.statements import dialect_insert


def overdue_clocks(session: Session, now: datetime) -> list[tuple[ClockRow, LeadRow]]:
    """Running clocks (not paused) of open leads whose deadline has passed, with their leads."""
    rows = session.execute(
        select(ClockRow, LeadRow)
        .join(LeadRow, LeadRow.lead_id == ClockRow.lead_id)
        .where(ClockRow.stopped_at.is_(None), ClockRow.due_at <= now, LeadRow.status == "open")
    ).all()
    return [(clock, lead) for clock, lead in rows if clock.paused_at is None]


def escalated_owners(session: Session, start: datetime, end: datetime) -> list[tuple[str | None, str | None]]:
    """``(owner, team)`` of every escalation past the first warning that fired in ``[start, end)``."""
    statement = (
        select(EscalationRow.owner, LeadRow.team)
        .join(LeadRow, LeadRow.lead_id == EscalationRow.lead_id)
        .where(EscalationRow.fired_at >= start, EscalationRow.fired_at < end, EscalationRow.level > 0)
    )
    return [tuple(row) for row in session.execute(statement)]


def period_recorded(session: Session, kind: str, period: str) -> bool:
    """Whether the digests of a period were recorded already."""
    statement = select(DigestRow.id).where(DigestRow.kind == kind, DigestRow.period == period).limit(1)
    return session.execute(statement).first() is not None


def insert_digest(
    session: Session,
    *,
    kind: str,
    period: str,
    recipient: str,
    channel: str,
    payload: dict,
    status: str,
    now: datetime,
    not_before: datetime | None,
) -> int | None:
    """Record one digest once per (kind, period, recipient, channel), its payload carrying its own
    id (``digest_id``); the id, or ``None`` when it was recorded before."""
    digest_id = session.execute(
        dialect_insert(session, DigestRow)
        .values(
            kind=kind,
            period=period,
            recipient=recipient,
            channel=channel,
            payload="{}",
            status=status,
            attempts=0,
            created_at=now,
            claimed_until=not_before,
        )
        .on_conflict_do_nothing(index_elements=["kind", "period", "recipient", "channel"])
        .returning(DigestRow.id)
    ).scalar()
    if digest_id is not None:
        text = json.dumps({**payload, "digest_id": digest_id}, ensure_ascii=False)
        session.execute(update(DigestRow).where(DigestRow.id == digest_id).values(payload=text))
    return digest_id
