"""What an alert's text needs to know beyond the lead: the reader's zone, and the clock's SLA.

Pure reads of the rules file. The reader's time zone is their ``timezone``, else the rules
file's (the team's); the SLA is the rule's ``within`` (first touch), the stage's ``max``, or a
follow-up's ``grace``, with whether days in it are working days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sla_guard.core.clocks import FOLLOW_UP_PREFIX
from sla_guard.core.engine import clock_rule
from sla_guard.core.follow_ups import find_cadence, parse_clock_name, task_text
from sla_guard.core.rules.schema import RuleSet


def person_zone(rules: RuleSet, person: str | None) -> str:
    """The IANA zone a person reads times in."""
    spec = rules.people.get(person) if person else None
    return (spec.timezone if spec and spec.timezone else None) or rules.spec.timezone


@dataclass(frozen=True)
class ClockFacts:
    """How long the clock's SLA is, whether its days are working days, and a follow-up's task."""

    sla: timedelta | None = None
    business: bool = False
    task: str | None = None


def clock_facts(rules: RuleSet, rule_name: str, clock_name: str, lead: dict) -> ClockFacts:
    rule = rules.rule(rule_name)
    if rule is None:
        return ClockFacts()
    business = not rules.calendar_for(rule).always_open
    if clock_name.startswith(FOLLOW_UP_PREFIX):
        cadence = find_cadence(rule, parse_clock_name(clock_name)[0])
        if cadence is None:
            return ClockFacts()
        return ClockFacts(cadence.grace, business, task_text(cadence, lead))
    spec = clock_rule(rule, clock_name)
    return ClockFacts(spec.within if spec else None, business)
