"""``speed``: what became of leads by how fast they were first touched.

Buckets of wall time from creation to first touch: ``<5m``, ``5m-30m``, ``30m-2h``, ``2h-1d``,
``>1d`` and ``never`` (not touched). Per bucket: ``leads``, ``won``, ``lost``, ``open``,
``conversion`` = won / leads, ``revenue`` = the sum of won leads' ``amount``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import case, func, literal, select
from sqlalchemy.engine import Connection

from sla_guard.reports.query import (
    ReportQuery,
    count_where,
    evaluated_once,
    lead_conditions,
    ratio,
    signed_seconds,
    sum_where,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow

NAME = "speed"
BUCKETS = (("<5m", 300), ("5m-30m", 1800), ("30m-2h", 7200), ("2h-1d", 86400), (">1d", None), ("never", None))
"""Bucket names with their upper bound in seconds (excluded); ``>1d`` is everything longer."""

FIELDS = ("leads", "won", "lost", "open", "conversion", "revenue")


def bucket_of(seconds) -> object:
    """The bucket of a lead first touched ``seconds`` after creation (null: never; negative: 0)."""
    bounded = [(seconds < limit, literal(name)) for name, limit in BUCKETS if limit is not None]
    return case((seconds.is_(None), literal("never")), *bounded, else_=literal(">1d"))


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    leads = LeadRow.__table__
    # seconds to first touch once per lead, then its bucket from that column
    timed = evaluated_once(
        select(
            signed_seconds(leads.c.created_at, leads.c.first_touch_at).label("s"),
            leads.c.status,
            leads.c.amount,
        ).where(*lead_conditions(query, leads.c))
    )
    base = select(bucket_of(timed.c.s).label("bucket"), timed.c.status, timed.c.amount).subquery()
    statement = select(
        base.c.bucket,
        func.count().label("leads"),
        count_where(base.c.status == "won").label("won"),
        count_where(base.c.status == "lost").label("lost"),
        count_where(base.c.status == "open").label("open"),
        sum_where(base.c.status == "won", base.c.amount).label("revenue"),
    ).group_by(base.c.bucket)
    found = {row.bucket: row for row in connection.execute(statement)}
    rows = []
    for name, _limit in BUCKETS:
        row = found.get(name)
        counts = {key: int(getattr(row, key)) if row else 0 for key in ("leads", "won", "lost", "open")}
        rows.append(
            {
                "bucket": name,
                **counts,
                "conversion": ratio(counts["won"], counts["leads"]),
                "revenue": _money(row.revenue if row else 0),
            }
        )
    return Report(NAME, query, ("bucket", *FIELDS), rows)


def _money(value) -> float:
    return round(float(value or 0), 2)
