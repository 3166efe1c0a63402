"""The state sla-guard derives for a lead: its clocks, the lead itself, the steps a clock owes.

Plain immutable values, plus business-time helpers shared by the SLA engine and follow-ups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sla_guard.core.rules.durations import business_amount
from sla_guard.core.rules.schema import Rule, RuleSet

FIRST_TOUCH = "first_touch"
"""Name of the clock that runs from a lead's creation to its first touch."""

STAGE_PREFIX = "stage:"
"""Prefix of the names of stage clocks (``stage:qualification``)."""

WARNING_LEVEL = 0
"""Escalation level of the warning sent before a deadline; ladder rungs are 1, 2, ..."""

FOLLOW_UP_PREFIX = "follow_up:"
"""Prefix of the names of follow-up step clocks (``follow_up:proposal:2``)."""

CANCELLED = "cancelled"
"""Stop reason of a follow-up step whose cadence ended before the step was done."""


@dataclass(frozen=True)
class ClockState:
    """One cycle of one SLA clock of a lead, as the events determine it."""

    name: str
    """``first_touch``, ``stage:<stage>`` or a follow-up step (``follow_up:<cadence>:<step>``)."""
    cycle: int
    """How many times the lead started this clock before (a lead back in a stage starts it anew)."""
    rule_name: str
    """The rule that set it, by which the clock is judged even after the rules change."""
    started_at: datetime
    due_at: datetime
    """The deadline, in business time of the rule's calendar from ``started_at``."""
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    """``touched``, ``stage_changed``, ``left_stage``, ``closed``, ``done``, ``cancelled`` …"""
    paused_at: datetime | None = None
    """Set while the lead sits in a pausing stage: the clock does not count."""
    budget_used: timedelta = timedelta(0)
    """Business time counted before ``resumed_at`` (it grows with each pause)."""
    resumed_at: datetime | None = None
    """Start of the current counting stretch (``started_at`` until the first pause ends)."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.cycle)

    @property
    def counting_since(self) -> datetime:
        return self.resumed_at or self.started_at

    @property
    def is_follow_up(self) -> bool:
        return self.name.startswith(FOLLOW_UP_PREFIX)

    def status(self, now: datetime) -> str:
        """``running``, ``paused``, ``overdue``, ``met``, ``missed`` or ``cancelled``."""
        if self.stopped_at is None:
            if self.paused_at is not None:
                return "paused"
            return "overdue" if now >= self.due_at else "running"
        if self.stop_reason == CANCELLED:
            return "cancelled"
        return "met" if self.stopped_at <= self.due_at else "missed"


@dataclass(frozen=True)
class LeadState:
    """A lead as sla-guard knows it after replaying its events."""

    lead_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    status: str = "open"
    known: bool = False
    created_at: datetime | None = None
    initial_stage: str | None = None
    first_touch_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    reason: str | None = None
    rule_name: str | None = None
    last_event_at: datetime | None = None
    stage_before_pause: str | None = None
    clocks: tuple[ClockState, ...] = ()


@dataclass(frozen=True)
class Step:
    """An alert a clock owes at ``at`` unless it stops first: a warning or a ladder rung."""

    level: int
    kind: str
    at: datetime
    notify: tuple[str, ...]
    reassign: bool = False


def business(rules: RuleSet, rule: Rule, amount: timedelta) -> timedelta:
    """A rules-file duration in the rule's business time (its days are working days)."""
    return business_amount(amount, rules.calendar_for(rule).working_day)


def add_business(rules: RuleSet, rule: Rule, start: datetime, amount: timedelta) -> datetime:
    """The instant ``amount`` of the rule's business time after ``start``."""
    return rules.calendar_for(rule).add(start, business(rules, rule, amount))
