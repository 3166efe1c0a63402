"""What every report is asked: the creation window, the filters, who may see what, and the SQL
pieces they share (seconds between instants, nearest-rank percentiles, local calendar buckets).

Every report counts leads *created* in ``[start, end)`` that pass the filters. The helpers here
compile to the same meaning on SQLite and PostgreSQL, so a number is one definition whatever
the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Float, Subquery, and_, bindparam, case, func, literal, literal_column, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from sla_guard.core.clocks import CANCELLED, FIRST_TOUCH
from sla_guard.exceptions import InvalidReportQuery
from sla_guard.store.models import ClockRow, LeadRow

DEFAULT_DAYS = 30
"""Without ``from``, reports cover the last 30 days."""

MAX_DAYS = 3 * 366
"""The longest window a report may cover."""

FILTERS = ("team", "source", "owner", "pipeline")
"""Lead attributes a report may be narrowed to (``?team=inbound``)."""


@dataclass(frozen=True)
class Visibility:
    """Whose leads a reader may see: the owners and teams listed (None: everybody's)."""

    owners: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ReportQuery:
    """The window, filters and reading context of one report."""

    start: datetime
    end: datetime
    now: datetime
    filters: Mapping[str, str] = field(default_factory=dict)
    visibility: Visibility | None = None
    timezone: str = "UTC"

    def narrowed(self, **filters: str) -> ReportQuery:
        return replace(self, filters={**self.filters, **filters})


def _instant(name: str, raw: str, timezone: str) -> datetime:
    """An ISO 8601 instant; a bare date is midnight in ``timezone``, a time without offset is UTC."""
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidReportQuery(name, f"{name} must be an ISO 8601 date or time") from None
    if value.year < 2000 or value.year > 2200:
        raise InvalidReportQuery(name, f"{name} must lie between 2000 and 2200")
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(timezone) if len(raw.strip()) == 10 else UTC)
    return value.astimezone(UTC)


def parse_query(
    args: Mapping[str, str], now: datetime, timezone: str = "UTC", visibility: Visibility | None = None
) -> ReportQuery:
    """A :class:`ReportQuery` from request parameters; :class:`InvalidReportQuery` names a bad one.

    A bare date in ``from``/``to`` is midnight of that day in ``timezone``; ``to`` is excluded.
    """
    end = _instant("to", args["to"], timezone) if args.get("to") else now
    start = _instant("from", args["from"], timezone) if args.get("from") else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidReportQuery("from", "from must be before to")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidReportQuery("from", f"a report covers at most {MAX_DAYS} days")
    filters = {}
    for name in FILTERS:
        value = args.get(name)
        if value:
            if len(value) > 1000 or "\x00" in value:
                raise InvalidReportQuery(name, f"{name} must be at most 1000 characters, without NUL")
            filters[name] = value
    return ReportQuery(start, end, now, filters, visibility, timezone)


def lead_conditions(query: ReportQuery, leads=None) -> list[ColumnElement]:
    """WHERE conditions: created in the window, the filters, and the reader's visibility."""
    leads = leads if leads is not None else LeadRow.__table__.c
    return [leads.created_at >= query.start, leads.created_at < query.end] + seen_by(
        query.filters, query.visibility, leads
    )


def seen_by(filters: Mapping[str, str], visibility: Visibility | None, leads=None) -> list[ColumnElement]:
    """WHERE conditions for the filters and what the reader may see (no time window)."""
    leads = leads if leads is not None else LeadRow.__table__.c
    out = [getattr(leads, name) == value for name, value in filters.items()]
    if visibility is not None:
        seen = []
        if visibility.owners:
            seen.append(leads.owner.in_(sorted(visibility.owners)))
        if visibility.teams:
            seen.append(leads.team.in_(sorted(visibility.teams)))
        out.append(or_(*seen) if seen else literal(False))
    return out


class epoch_s(FunctionElement):
    """Seconds since 1970 of a stored instant, to the millisecond, on either database."""

    type = Float()
    inherit_cache = True
    name = "epoch_s"


@compiles(epoch_s)
def _epoch_default(element, compiler, **kw):
    # date_part computes in double precision: the same value as EXTRACT(EPOCH ...) cast to double
    # (both the nearest double to the exact microseconds), without a numeric per row
    return f"date_part('epoch', {compiler.process(element.clauses, **kw)})"


@compiles(epoch_s, "sqlite")
def _epoch_sqlite(element, compiler, **kw):
    # whole seconds exactly, then the fraction from %f (SS.SSS); naive text is UTC in our store
    value = compiler.process(element.clauses, **kw)
    return (
        f"(CAST(strftime('%s', {value}) AS REAL) - CAST(strftime('%S', {value}) AS REAL)"
        f" + CAST(strftime('%f', {value}) AS REAL))"
    )


def signed_seconds(earlier, later) -> ColumnElement:
    """Wall seconds from ``earlier`` to ``later``, negative when ``later`` is earlier. A duration
    shown is never negative: the reports compare this only to positive bounds, and clamp its
    percentiles at zero afterwards (:func:`clamped`; clamping is monotone, so the percentile of
    clamped values is the clamped percentile)."""
    return epoch_s(later) - epoch_s(earlier)


def clamped(seconds) -> float | None:
    """A percentile of :func:`signed_seconds` as shown: at least zero, to 0.1 s."""
    return None if seconds is None else round(max(float(seconds), 0.0), 1)


def evaluated_once(statement) -> Subquery:
    """``statement`` as a subquery the database computes before the query around it: ``OFFSET 0``
    keeps PostgreSQL from merging it in, so its computed columns (a bucket, a month) are
    evaluated once per row, and a GROUP BY on them is planned as a few groups (hashed) rather
    than one group per row (sorted)."""
    return statement.offset(literal_column("0")).subquery()


def ratio(numerator, denominator):
    """``numerator / denominator`` rounded to 4 places, None when the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def with_percentiles(base, keys: list[str], percents: dict[str, int], dialect: str):
    """``(source, columns)``: a FROM to aggregate ``base`` (a subquery with a column ``v``) by
    ``keys``, and aggregate columns with the nearest-rank percentiles of ``v`` (nulls ignored).

    PostgreSQL computes them with ``percentile_disc`` (the same definition: the first value whose
    cumulative share reaches p); SQLite, which lacks it, with :func:`ranks` and :func:`percentile`.
    """
    if dialect == "postgresql":
        columns = [
            func.percentile_disc(percent / 100).within_group(base.c.v).label(label)
            for label, percent in percents.items()
        ]
        return base, columns
    r, n = ranks(base.c.v, [base.c[key] for key in keys])
    ranked = select(base, r, n).subquery()
    columns = [
        percentile(ranked.c.v, ranked.c.r, ranked.c.n, percent).label(label) for label, percent in percents.items()
    ]
    return ranked, columns


def ranks(value, keys: list) -> tuple[ColumnElement, ColumnElement]:
    """Window columns ``(r, n)``: ``value``'s 1-based ascending rank and the count of its group,
    among the rows of the same ``keys`` whose ``value`` is likewise null or not null."""
    partition = [*keys, case((value.is_(None), 1), else_=0)]
    return (
        func.row_number().over(partition_by=partition, order_by=value).label("r"),
        func.count().over(partition_by=partition).label("n"),
    )


def percentile(value, r, n, percent: int) -> ColumnElement:
    """Aggregate: the nearest-rank ``percent`` percentile of ``value`` over rows carrying the
    :func:`ranks` columns ``r``, ``n`` -- the smallest value whose rank has ``100 r >= percent n``."""
    return func.min(case((and_(value.is_not(None), r * 100 >= percent * n), value)))


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def calendar_periods(start: datetime, end: datetime, timezone: str, unit: str) -> list[tuple[str, datetime, datetime]]:
    """Local calendar ``month``s (``2026-11``) or ``week``s (their Monday, ``2026-11-23``) that
    meet ``[start, end)``, as ``(label, utc_start, utc_end)``; DST is honoured."""
    zone = ZoneInfo(timezone)
    day = start.astimezone(zone).date()
    day = day.replace(day=1) if unit == "month" else day - timedelta(days=day.weekday())
    out = []
    while _local_midnight(day, zone) < end:
        if unit == "month":
            following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            label = day.strftime("%Y-%m")
        else:
            following = day + timedelta(days=7)
            label = day.isoformat()
        out.append((label, _local_midnight(day, zone), _local_midnight(following, zone)))
        day = following
    return out


def period_label(column, periods: list[tuple[str, datetime, datetime]]) -> ColumnElement:
    """A CASE naming the period an instant falls in (the periods are few: one per month or week)."""
    return case(
        *[(and_(column >= begin, column < finish), literal(label)) for label, begin, finish in periods],
        else_=literal(None),
    )


CLOCK_STATUSES = ("met", "missed", "overdue", "running", "paused", "cancelled")
"""What a first-touch clock can be, as :meth:`ClockState.status` names it."""


def clock_status(clocks, now: datetime) -> ColumnElement:
    """:meth:`sla_guard.core.clocks.ClockState.status` in SQL (null when there is no clock)."""
    return case(
        (clocks.c.id.is_(None), literal(None)),
        (and_(clocks.c.stopped_at.is_(None), clocks.c.paused_at.is_not(None)), literal("paused")),
        (and_(clocks.c.stopped_at.is_(None), clocks.c.due_at <= now), literal("overdue")),
        (clocks.c.stopped_at.is_(None), literal("running")),
        (clocks.c.stop_reason == CANCELLED, literal("cancelled")),
        (clocks.c.stopped_at <= clocks.c.due_at, literal("met")),
        else_=literal("missed"),
    )


def first_touch_clocks():
    """The clocks table aliased for an outer join of each lead's first-touch clock."""
    return ClockRow.__table__.alias("first_touch")


def join_first_touch(leads, clocks):
    # the clock name is written into the SQL, so PostgreSQL can match the partial index
    # ix_clocks_first_touch whatever plan it caches
    name = bindparam("first_touch_name", FIRST_TOUCH, literal_execute=True)
    return leads.outerjoin(clocks, and_(clocks.c.lead_id == leads.c.lead_id, clocks.c.name == name))


def count_where(condition) -> ColumnElement:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def sum_where(condition, value) -> ColumnElement:
    return func.coalesce(func.sum(case((condition, func.coalesce(value, 0.0)), else_=0.0)), 0.0)
