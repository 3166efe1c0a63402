"""``marketing``: what each source brings and costs, per calendar month of creation.

Rows per ``source`` and local month (rules-file time zone) of lead creation: ``leads``, ``won``,
``revenue`` (sum of won ``amount``), ``conversion`` = won / leads, ``spend`` (the month's spend
on the source, whatever the other filters), ``cpl`` = spend / leads, ``cac`` = spend / won,
``roi`` = (revenue - spend) / spend, ``ltv`` and ``ltv_cac`` = ltv / cac.

``ltv``: a customer (``lead.customer``, else the lead itself) belongs to the source and month
of creation of the lead it was first won on (earliest close); ``ltv`` is the mean, over the
customers a row gained, of each one's total won revenue over all its leads.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, func, select, union_all
from sqlalchemy.engine import Connection

from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports.query import (
    ReportQuery,
    calendar_periods,
    count_where,
    evaluated_once,
    lead_conditions,
    period_label,
    ratio,
    sum_where,
)
from sla_guard.reports.report import Report
from sla_guard.store.models import LeadRow, SpendRow

NAME = "marketing"
GROUPS = ("source",)
FIELDS = ("leads", "won", "revenue", "conversion", "spend", "cpl", "cac", "roi", "ltv", "ltv_cac")


WON = bindparam("won_status", "won", literal_execute=True)
"""``status = 'won'`` written into the SQL, so PostgreSQL can match the partial index ix_leads_won_customer."""


def _first_wins(query: ReportQuery, month):
    """Per (source, month): customers first won on a lead of that row, and their mean lifetime revenue."""
    leads = LeadRow.__table__
    # a lead without a customer is its own customer: first won on itself, its lifetime its amount
    alone = select(leads.c.source, leads.c.created_at, func.coalesce(leads.c.amount, 0.0).label("lifetime")).where(
        leads.c.status == WON, leads.c.customer.is_(None), *lead_conditions(query, leads.c)
    )
    # only customers with a won lead in the window can be first won in it: rank just their leads
    other = leads.alias("candidate")
    candidates = select(other.c.customer).where(
        other.c.status == WON, other.c.customer.is_not(None), *lead_conditions(query, other.c)
    )
    ranked = (
        select(
            leads.c.source,
            leads.c.team,
            leads.c.owner,
            leads.c.pipeline,
            leads.c.created_at,
            func.row_number()
            .over(partition_by=leads.c.customer, order_by=(leads.c.closed_at, leads.c.lead_id))
            .label("rn"),
            func.sum(func.coalesce(leads.c.amount, 0.0)).over(partition_by=leads.c.customer).label("lifetime"),
        )
        .where(leads.c.status == WON, leads.c.customer.in_(candidates))
        .subquery()
    )
    shared = select(ranked.c.source, ranked.c.created_at, ranked.c.lifetime).where(
        ranked.c.rn == 1, *lead_conditions(query, ranked.c)
    )
    first_won = union_all(alone, shared).subquery()
    label = period_label(first_won.c.created_at, month).label("month")
    return select(first_won.c.source, label, func.avg(first_won.c.lifetime).label("ltv")).group_by(
        first_won.c.source, label
    )


def run(connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    by = args.get("by") or "source"
    if by not in GROUPS:
        raise InvalidReportQuery("by", "by must be source")
    leads, spend = LeadRow.__table__, SpendRow.__table__
    months = calendar_periods(query.start, query.end, query.timezone, "month")
    month = period_label(leads.c.created_at, months).label("month")
    dated = evaluated_once(
        select(leads.c.source, month, leads.c.status, leads.c.amount).where(*lead_conditions(query, leads.c))
    )
    counted = connection.execute(
        select(
            dated.c.source,
            dated.c.month,
            func.count().label("leads"),
            count_where(dated.c.status == "won").label("won"),
            sum_where(dated.c.status == "won", dated.c.amount).label("revenue"),
        ).group_by(dated.c.source, dated.c.month)
    ).all()
    spent_where = [spend.c.month.in_([label for label, _, _ in months])]
    if "source" in query.filters:
        spent_where.append(spend.c.source == query.filters["source"])
    spent = {
        (row.source, row.month): float(row.amount)
        for row in connection.execute(select(spend.c.source, spend.c.month, spend.c.amount).where(*spent_where))
    }
    ltv = {(row.source, row.month): float(row.ltv) for row in connection.execute(_first_wins(query, months))}
    found = {(row.source, row.month): row for row in counted}
    rows = []
    for source, label in sorted(set(found) | set(spent), key=lambda k: (k[0] is None, str(k[0]), k[1])):
        row = found.get((source, label))
        n, won = (int(row.leads), int(row.won)) if row else (0, 0)
        revenue = round(float(row.revenue), 2) if row else 0.0
        cost = spent.get((source, label))
        value = ltv.get((source, label))
        cac = ratio(cost, won) if cost is not None else None
        rows.append(
            {
                "source": source,
                "month": label,
                "leads": n,
                "won": won,
                "revenue": revenue,
                "conversion": ratio(won, n),
                "spend": cost,
                "cpl": _money(ratio(cost, n)) if cost is not None else None,
                "cac": _money(cac),
                "roi": ratio(revenue - cost, cost) if cost is not None else None,
                "ltv": _money(value),
                "ltv_cac": ratio(value * won, cost) if value is not None and cost is not None else None,
            }
        )
    return Report(NAME, query, ("source", "month", *FIELDS), rows, meta={"by": by})


def _money(value) -> float | None:
    return None if value is None else round(value, 2)
