"""Revenue insight: the one definition of every number the API, the dashboard and the digests show.

Each report is a module with ``NAME`` and ``run(connection, query, args, rules) -> Report``;
its SQLAlchemy Core queries aggregate in the database (SQLite and PostgreSQL alike) over leads
created in the query's window. Nothing else computes these numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import Connection

from sla_guard.exceptions import InvalidReportQuery
from sla_guard.reports import funnel, losses, marketing, sla, speed
from sla_guard.reports.query import ReportQuery, Visibility, parse_query
from sla_guard.reports.report import Report

REPORTS = {module.NAME: module for module in (sla, speed, funnel, losses, marketing)}
"""Every report by name, in the order the dashboard shows them."""

WORK_MEM = "64MB"
"""PostgreSQL memory per sort or hash of one report query (this transaction only)."""

RANDOM_PAGE_COST = 1.1
"""PostgreSQL's price of an index probe's page for report queries (this transaction only)."""


def run_report(name: str, connection: Connection, query: ReportQuery, args: Mapping[str, str], rules=None) -> Report:
    """Compute report ``name``; :class:`InvalidReportQuery` for an unknown name or parameter."""
    module = REPORTS.get(name)
    if module is None:
        raise InvalidReportQuery("name", f"no report {name!r}; reports: {', '.join(REPORTS)}")
    if connection.dialect.name == "postgresql":
        # these are short analytic queries: compiling them with LLVM costs more than it saves;
        # their sorts (percentiles, window functions) fit in memory instead of spilling to disk;
        # a window of leads is looked up by index (a lead's clock, its stays) in a working set
        # that is cached, so a probe is priced near a sequential page, not at the default 4x
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
        connection.exec_driver_sql(f"SET LOCAL random_page_cost = {RANDOM_PAGE_COST}")
    return module.run(connection, query, args, rules)


__all__ = ["REPORTS", "Report", "ReportQuery", "Visibility", "parse_query", "run_report"]
