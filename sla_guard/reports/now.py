"""The *Now* wall screen: open clocks past their deadline or close to it, per owner.

A clock is ``overdue`` once its deadline passed and ``at_risk`` when it falls due within
``at_risk_s``; paused clocks and closed leads are not shown. Each row carries the escalation
a head may acknowledge (the newest unacknowledged rung), or says one was acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection

from sla_guard.reports.query import Visibility, seen_by
from sla_guard.store.models import ClockRow, EscalationRow, LeadRow

AT_RISK_S = 1800
"""Deadlines this close (seconds) count as at risk."""

LIMIT = 500
"""Rows shown at most (the most overdue first)."""


def wall(
    connection: Connection,
    now: datetime,
    filters: Mapping[str, str],
    visibility: Visibility | None,
    at_risk_s: int = AT_RISK_S,
) -> list[dict]:
    leads, clocks, escalations = LeadRow.__table__, ClockRow.__table__, EscalationRow.__table__
    pending = (
        select(func.max(escalations.c.id))
        .where(escalations.c.clock_id == clocks.c.id, escalations.c.level > 0, escalations.c.acknowledged_at.is_(None))
        .scalar_subquery()
    )
    acknowledged = exists().where(escalations.c.clock_id == clocks.c.id, escalations.c.acknowledged_at.is_not(None))
    statement = (
        select(
            clocks.c.id.label("clock_id"),
            clocks.c.name.label("clock"),
            clocks.c.due_at,
            leads.c.lead_id,
            leads.c.name,
            leads.c.owner,
            leads.c.team,
            leads.c.source,
            leads.c.url,
            pending.label("escalation_id"),
            acknowledged.label("acknowledged"),
        )
        .select_from(leads.join(clocks, clocks.c.lead_id == leads.c.lead_id))
        .where(
            and_(clocks.c.stopped_at.is_(None), clocks.c.paused_at.is_(None), leads.c.status == "open"),
            clocks.c.due_at <= now + timedelta(seconds=at_risk_s),
            *seen_by(filters, visibility, leads.c),
        )
        .order_by(clocks.c.due_at, clocks.c.id)
        .limit(LIMIT)
    )
    out = []
    for row in connection.execute(statement):
        late_s = (now - row.due_at).total_seconds()
        out.append(
            {
                "lead_id": row.lead_id,
                "name": row.name,
                "owner": row.owner,
                "team": row.team,
                "source": row.source,
                "url": row.url,
                "clock": row.clock,
                "due_at": row.due_at,
                "state": "overdue" if late_s >= 0 else "at_risk",
                "late_s": late_s,
                "escalation_id": row.escalation_id,
                "acknowledged": bool(row.acknowledged),
            }
        )
    return out


def by_owner(rows: list[dict]) -> list[tuple[str | None, list[dict]]]:
    """Rows grouped per owner, the owner with the most overdue first."""
    groups: dict[str | None, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["owner"], []).append(row)
    return sorted(
        groups.items(), key=lambda item: (-sum(r["state"] == "overdue" for r in item[1]), str(item[0] or "~"))
    )
