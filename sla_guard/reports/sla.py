"""``sla``: first-touch compliance and speed, per owner, source, team, rule or week of creation.

Per group: ``leads`` created; how their first-touch clocks stand (``met``, ``missed``,
``overdue``, ``running``, ``paused``, ``cancelled``; a lead no rule gave a clock is in none);
``compliance`` = met / (met + missed + overdue); ``first_touch_p50_s`` / ``p90`` -- nearest-rank
percentiles of wall seconds from creation to first touch, over touched leads only.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, literal, select
from sqlalchemy.engine import Connection

from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports.query import (
    CLOCK_STATUSES,
    ReportQuery,
    calendar_periods,
    clock_status,
    count_where,
    first_touch_clocks,
    join_first_touch,
    lead_conditions,
    period_label,
    ratio,
    seconds_between,
    with_percentiles,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow

NAME = "sla"
GROUPS = ("owner", "source", "team", "rule", "week")
"""Values of ``by``; ``week`` is the local week (its Monday) of creation in the rules' time zone."""

FIELDS = (
    "leads",
    *CLOCK_STATUSES,
    "compliance",
    "first_touch_p50_s",
    "first_touch_p90_s",
)


def _group_key(by: str | None, query: ReportQuery, leads, clocks):
    if by is None:
        return literal("all")
    if by == "rule":
        return func.coalesce(clocks.c.rule_name, leads.c.rule_name)
    if by == "week":
        return period_label(leads.c.created_at, calendar_periods(query.start, query.end, query.timezone, "week"))
    return leads.c[by]


def compute(connection: Connection, query: ReportQuery, by: str | None) -> list[dict]:
    """One row per group (``by=None``: one row for everything), ordered by group, null last."""
    leads, clocks = LeadRow.__table__, first_touch_clocks()
    key = _group_key(by, query, leads, clocks).label("g")
    touch_s = seconds_between(leads.c.created_at, leads.c.first_touch_at)
    base = select(
        key,
        clock_status(clocks, query.now).label("status"),
        touch_s.label("v"),
    ).select_from(join_first_touch(leads, clocks))
    base = base.where(*lead_conditions(query, leads.c)).subquery()
    source, percentiles = with_percentiles(base, ["g"], {"p50": 50, "p90": 90}, connection.dialect.name)
    statement = select(
        source.c.g,
        func.count().label("leads"),
        *[count_where(source.c.status == status).label(status) for status in CLOCK_STATUSES],
        *percentiles,
    ).group_by(source.c.g)
    out = []
    for row in connection.execute(statement):
        counts = {status: int(getattr(row, status)) for status in CLOCK_STATUSES}
        out.append(
            {
                **({by: row.g} if by else {}),
                "leads": int(row.leads),
                **counts,
                "compliance": ratio(counts["met"], counts["met"] + counts["missed"] + counts["overdue"]),
                "first_touch_p50_s": _seconds(row.p50),
                "first_touch_p90_s": _seconds(row.p90),
            }
        )
    return sorted(out, key=lambda item: (item.get(by) is None, str(item.get(by)))) if by else out


def _seconds(value) -> float | None:
    return None if value is None else round(float(value), 1)


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    by = args.get("by") or "owner"
    if by not in GROUPS:
        raise InvalidReportQuery("by", f"by must be one of {', '.join(GROUPS)}")
    rows = compute(connection, query, by)
    total = compute(connection, query, None)
    empty = {"leads": 0, **dict.fromkeys(CLOCK_STATUSES, 0), "compliance": None}
    empty |= {"first_touch_p50_s": None, "first_touch_p90_s": None}
    return Report(NAME, query, (by, *FIELDS), rows, meta={"by": by}, extra={"total": total[0] if total else empty})
