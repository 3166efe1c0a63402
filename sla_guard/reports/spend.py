"""Marketing spend as it comes in (``POST /api/spend``, ``sla-guard spend import``, the dashboard's
upload): rows ``{month, source, amount}`` checked here, before anything is stored. Pure."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import Any

from sla_guard.core.spend import Spend
from sla_guard.exceptions import InvalidReportQuery

MONTH = re.compile(r"^(\d{4})-(\d{2})$")
MAX_ROWS = 10_000
"""Rows accepted in one request or file."""


def _row(item: Any, where: str) -> Spend:
    if not isinstance(item, dict):
        raise InvalidReportQuery(where or "body", "expected an object with month, source and amount")
    month = item.get("month")
    found = MONTH.match(month) if isinstance(month, str) else None
    if not found or not 2000 <= int(found[1]) <= 2100 or not 1 <= int(found[2]) <= 12:
        raise InvalidReportQuery(f"{where}.month", "month must look like 2026-11")
    source = item.get("source")
    if not isinstance(source, str) or not source.strip() or len(source) > 1000 or "\x00" in source:
        raise InvalidReportQuery(f"{where}.source", "source must be a non-empty text of at most 1000 characters")
    amount = item.get("amount")
    if isinstance(amount, str):
        try:
            amount = float(amount.replace(" ", "").replace(",", "."))
        except ValueError:
            amount = None
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount) or amount < 0:
        raise InvalidReportQuery(f"{where}.amount", "amount must be a number, zero or more")
    if amount > 1e15:
        raise InvalidReportQuery(f"{where}.amount", "amount must be at most 1e15")
    return Spend(month, source.strip(), float(amount))


def parse_spend(items: Any) -> list[Spend]:
    """Rows from a decoded JSON body (an array of objects); the last of repeated (month, source) wins."""
    if not isinstance(items, list) or not items:
        raise InvalidReportQuery("body", "expected a non-empty JSON array of {month, source, amount}")
    if len(items) > MAX_ROWS:
        raise InvalidReportQuery("body", f"at most {MAX_ROWS} rows at once")
    rows = {}
    for index, item in enumerate(items):
        spend = _row(item, f"[{index}]")
        rows[(spend.month, spend.source)] = spend
    return list(rows.values())


def parse_spend_csv(text: str) -> list[Spend]:
    """Rows from CSV text with the header ``month,source,amount`` (fields name the line: ``line 3.amount``)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if [name.strip() for name in reader.fieldnames or []] != ["month", "source", "amount"]:
        raise InvalidReportQuery("header", "the first line must be month,source,amount")
    items = []
    for item in reader:
        items.append({key.strip(): (value or "").strip() for key, value in item.items() if key})
    if not items:
        raise InvalidReportQuery("body", "no rows after the header")
    try:
        return parse_spend(items)
    except InvalidReportQuery as exc:
        found = re.match(r"^\[(\d+)\](.*)$", exc.field)
        if found:
            raise InvalidReportQuery(f"line {int(found[1]) + 2}{found[2]}", exc.message) from None
        raise
