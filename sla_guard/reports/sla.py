"""``sla``: first-touch compliance and speed, per owner, source, team, rule or week of creation.

Per group: ``leads`` created; how their first-touch clocks stand (``met``, ``missed``,
``overdue``, ``running``, ``paused``, ``cancelled``; a lead no rule gave a clock is in none);
``compliance`` = met / (met + missed + overdue); ``first_touch_p50_s`` / ``p90`` -- nearest-rank
percentiles of wall seconds from creation to first touch, over touched leads only.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, literal, select, tuple_, union_all
from sqlalchemy.engine import Connection

from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports.query import (
    CLOCK_STATUSES,
    ReportQuery,
    calendar_periods,
    clamped,
    clock_status,
    count_where,
    evaluated_once,
    first_touch_clocks,
    join_first_touch,
    lead_conditions,
    period_label,
    ratio,
    signed_seconds,
    with_percentiles,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow

NAME = "sla"
GROUPS = ("owner", "source", "team", "rule", "week")
"""Values of ``by``; ``week`` is the local week (its Monday) of creation in the rules' time zone."""

PERCENTS = {"p50": 50, "p90": 90}

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


def _stays(query: ReportQuery, by: str | None):
    """One row per lead of the window: its group ``g``, first-touch clock ``status`` and touch seconds ``v``."""
    leads, clocks = LeadRow.__table__, first_touch_clocks()
    key = _group_key(by, query, leads, clocks).label("g")
    touch_s = signed_seconds(leads.c.created_at, leads.c.first_touch_at)  # clamped at 0 after the percentile
    return evaluated_once(
        select(key, clock_status(clocks, query.now).label("status"), touch_s.label("v"))
        .select_from(join_first_touch(leads, clocks))
        .where(*lead_conditions(query, leads.c))
    )


def _aggregates(source, percentiles) -> list:
    return [
        func.count().label("leads"),
        *[count_where(source.c.status == status).label(status) for status in CLOCK_STATUSES],
        *percentiles,
    ]


def _statement(query: ReportQuery, by: str | None, dialect: str):
    """Rows per group and the total row (``total`` = 1) in one statement: GROUPING SETS on
    PostgreSQL, so the window's leads are read once; on SQLite (no grouping sets) a UNION ALL."""
    base = _stays(query, by)
    if by is None:
        source, percentiles = with_percentiles(base, [], PERCENTS, dialect)
        return select(literal(None).label("g"), literal(1).label("total"), *_aggregates(source, percentiles))
    if dialect == "postgresql":
        source, percentiles = with_percentiles(base, [], PERCENTS, dialect)
        return select(source.c.g, func.grouping(source.c.g).label("total"), *_aggregates(source, percentiles)).group_by(
            func.grouping_sets(tuple_(source.c.g), tuple_())
        )
    per_group, percentiles = with_percentiles(base, ["g"], PERCENTS, dialect)
    whole, whole_percentiles = with_percentiles(base, [], PERCENTS, dialect)
    return union_all(
        select(per_group.c.g, literal(0).label("total"), *_aggregates(per_group, percentiles)).group_by(per_group.c.g),
        select(literal(None).label("g"), literal(1).label("total"), *_aggregates(whole, whole_percentiles)),
    )


def _figures(row) -> dict:
    counts = {status: int(getattr(row, status)) for status in CLOCK_STATUSES}
    return {
        "leads": int(row.leads),
        **counts,
        "compliance": ratio(counts["met"], counts["met"] + counts["missed"] + counts["overdue"]),
        "first_touch_p50_s": clamped(row.p50),
        "first_touch_p90_s": clamped(row.p90),
    }


EMPTY = {"leads": 0, **dict.fromkeys(CLOCK_STATUSES, 0), "compliance": None}
EMPTY |= {"first_touch_p50_s": None, "first_touch_p90_s": None}
"""The total of a window without leads."""


def grouped(connection: Connection, query: ReportQuery, by: str | None) -> tuple[list[dict], dict]:
    """``(rows, total)``: one row per group ordered by group, null last (none when ``by`` is None),
    and the figures of all the window's leads together."""
    rows, total = [], dict(EMPTY)
    for row in connection.execute(_statement(query, by, connection.dialect.name)):
        if row.total:
            total = _figures(row) if row.leads else dict(EMPTY)
        else:
            rows.append({by: row.g, **_figures(row)})
    rows.sort(key=lambda item: (item[by] is None, str(item[by])))
    return rows, total


def compute(connection: Connection, query: ReportQuery, by: str | None) -> list[dict]:
    """One row per group (``by=None``: one row for everything, none without leads), ordered by group, null last."""
    rows, total = grouped(connection, query, by)
    if by is None:
        return [total] if total["leads"] else []
    return rows


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    by = args.get("by") or "owner"
    if by not in GROUPS:
        raise InvalidReportQuery("by", f"by must be one of {', '.join(GROUPS)}")
    rows, total = grouped(connection, query, by)
    return Report(NAME, query, (by, *FIELDS), rows, meta={"by": by}, extra={"total": total})
