"""``losses``: why, where and whose leads were lost.

Over leads created in the window that are now lost, grouped ``by`` ``reason`` (default),
``stage`` (the stage the lead was lost in), ``source`` or ``owner``; leads lost without a reason
form the group ``null``. Per group: ``lost``, ``share`` of all lost, ``amount`` (sum of their
amounts), ``after_sla_breach`` (lost leads whose first touch missed its SLA: the clock ended
after, or is still past, its deadline).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports.query import (
    ReportQuery,
    clock_status,
    count_where,
    first_touch_clocks,
    join_first_touch,
    lead_conditions,
    ratio,
    sum_where,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow

NAME = "losses"
GROUPS = ("reason", "stage", "source", "owner")
FIELDS = ("lost", "share", "amount", "after_sla_breach")


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    by = args.get("by") or "reason"
    if by not in GROUPS:
        raise InvalidReportQuery("by", f"by must be one of {', '.join(GROUPS)}")
    leads, clocks = LeadRow.__table__, first_touch_clocks()
    status = clock_status(clocks, query.now)
    statement = (
        select(
            leads.c[by].label("g"),
            func.count().label("lost"),
            sum_where(leads.c.lead_id.is_not(None), leads.c.amount).label("amount"),
            count_where(status.in_(("missed", "overdue"))).label("breached"),
        )
        .select_from(join_first_touch(leads, clocks))
        .where(*lead_conditions(query, leads.c), leads.c.status == "lost")
        .group_by(leads.c[by])
    )
    found = list(connection.execute(statement))
    total = sum(int(row.lost) for row in found)
    rows = [
        {
            by: row.g,
            "lost": int(row.lost),
            "share": ratio(int(row.lost), total),
            "amount": round(float(row.amount or 0), 2),
            "after_sla_breach": int(row.breached),
        }
        for row in found
    ]
    rows.sort(key=lambda item: (-item["lost"], item[by] is None, str(item[by])))
    return Report(NAME, query, (by, *FIELDS), rows, meta={"by": by}, extra={"total_lost": total})
