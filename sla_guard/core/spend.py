"""Marketing spend as sla-guard keeps it: what one source cost in one calendar month. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Spend:
    """The spend of ``source`` in ``month`` (``2026-11``), checked by :mod:`sla_guard.reports.spend`."""

    month: str
    source: str
    amount: float
