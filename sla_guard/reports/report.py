"""A computed report: its rows and how they are written as JSON and CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime

from sla_guard.reports.query import ReportQuery


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass
class Report:
    """Rows of one report, the columns they have (in CSV order), and anything else it says."""

    name: str
    query: ReportQuery
    columns: tuple[str, ...]
    rows: list[dict]
    meta: dict = field(default_factory=dict)
    """Parameters the report was computed with (``by``, ``pipeline``), shown in JSON."""
    extra: dict = field(default_factory=dict)
    """Further JSON-only parts (totals, transitions)."""

    def as_json(self) -> dict:
        return {
            "report": self.name,
            "from": iso(self.query.start),
            "to": iso(self.query.end),
            "timezone": self.query.timezone,
            "filters": dict(self.query.filters),
            **self.meta,
            "rows": self.rows,
            **self.extra,
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(["" if row.get(column) is None else _cell(row[column]) for column in self.columns])
        return out.getvalue()


def _cell(value) -> str:
    text = str(value)
    # a spreadsheet must not run a CRM-supplied name as a formula
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
