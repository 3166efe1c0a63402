"""Mandatory follow-ups: which cadences start, which steps are done, missed or cancelled. Pure.

A cadence (``rules[].follow_ups[]``) starts when its trigger happens: the lead enters a stage,
gets its first touch, or gets a touch with a given outcome (``no_answer``). Each of its steps is
a clock of its own, ``follow_up:<cadence>:<n>``: it starts at ``trigger + after[n]`` (business
time), when the task is created for the owner, and is due ``grace`` later. A touch at or after
the step's start does it; a step not done by its due time escalates through the cadence's
ladder. A cadence never outlives its lead: what its ``until`` lists (leaving the stage, closing,
a touch) cancels the steps not done yet. Re-triggering a cadence starts a new cycle.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sla_guard.core.clocks import CANCELLED, FOLLOW_UP_PREFIX, ClockState, LeadState, Step, add_business
from sla_guard.core.events import LeadEvent
from sla_guard.core.rules.schema import FollowUpRule, Rule, RuleSet

TASK_LEVEL = 0
"""Level of a step's first action: creating the task for the owner."""

TASK_KIND = "follow_up.task"
"""Kind of the step that creates the task (or alerts the owner where no CRM takes tasks)."""

MISSED_KIND = "follow_up.missed"
"""Kind of the escalations of a step not done by its due time."""


def cadence_name(cadence: FollowUpRule, position: int) -> str:
    return cadence.name or f"follow_up_{position}"


def clock_name(cadence: str, step: int) -> str:
    return f"{FOLLOW_UP_PREFIX}{cadence}:{step}"


def parse_clock_name(name: str) -> tuple[str, int]:
    """``follow_up:proposal:2`` → ``("proposal", 2)``."""
    cadence, _, step = name[len(FOLLOW_UP_PREFIX) :].rpartition(":")
    return cadence, int(step)


def find_cadence(rule: Rule, name: str) -> FollowUpRule | None:
    for position, cadence in enumerate(rule.follow_ups):
        if cadence_name(cadence, position) == name:
            return cadence
    return None


def steps(clock: ClockState, rule: Rule, rules: RuleSet) -> list[Step]:
    """What a follow-up step owes: its task at the start, then the ladder once it is overdue."""
    cadence = find_cadence(rule, parse_clock_name(clock.name)[0])
    if cadence is None:
        return []
    owed = [Step(TASK_LEVEL, TASK_KIND, clock.started_at, ("owner",))]
    for level, rung in enumerate(cadence.escalate, start=1):
        at = add_business(rules, rule, clock.due_at, rung.after) if rung.after else clock.due_at
        owed.append(Step(level, MISSED_KIND, at, tuple(rung.notify), rung.reassign))
    return owed


def _cycles(clocks: list[ClockState], name: str) -> list[ClockState]:
    prefix = f"{FOLLOW_UP_PREFIX}{name}:"
    return [clock for clock in clocks if clock.name.startswith(prefix)]


def _cancel(clock: ClockState, at: datetime) -> ClockState:
    """End a step that was not done: its task is no longer wanted."""
    if clock.stopped_at is not None:
        return clock
    return replace(clock, stopped_at=at, stop_reason=CANCELLED)


def _end_cadence(clocks: list[ClockState], name: str, at: datetime) -> list[ClockState]:
    prefix = f"{FOLLOW_UP_PREFIX}{name}:"
    return [_cancel(clock, at) if clock.name.startswith(prefix) else clock for clock in clocks]


def _ends(cadence: FollowUpRule, before: LeadState, after: LeadState, event: LeadEvent) -> bool:
    """Whether ``event`` ends a running cycle of ``cadence``."""
    if event.type == "lead.closed":
        return "close" in cadence.until
    old_stage, new_stage = before.fields.get("stage"), after.fields.get("stage")
    if event.type == "lead.stage_changed" and new_stage != old_stage and "stage_change" in cadence.until:
        return cadence.when.stage is None or old_stage == cadence.when.stage
    if event.type == "lead.touched" and "touch" in cadence.until:
        outcome = event.touch.outcome if event.touch else None
        return cadence.when.touch_outcome is None or outcome != cadence.when.touch_outcome
    return False


def _triggered(cadence: FollowUpRule, before: LeadState, after: LeadState, event: LeadEvent) -> bool:
    when = cadence.when
    if when.stage is not None:
        entered = event.type in ("lead.created", "lead.stage_changed")
        return (
            entered
            and after.fields.get("stage") == when.stage
            and (event.type == "lead.created" or before.fields.get("stage") != when.stage)
        )
    if when.first_touch:
        return before.first_touch_at is None and after.first_touch_at is not None
    outcome = event.touch.outcome if event.type == "lead.touched" and event.touch else None
    return outcome is not None and outcome == when.touch_outcome


def advance(before: LeadState, after: LeadState, event: LeadEvent, rules: RuleSet) -> LeadState:
    """Apply ``event`` to the lead's follow-ups, given the lead before and after the event."""
    rule = rules.rule(after.rule_name)
    at = event.occurred_at
    clocks = list(after.clocks)
    if event.type == "lead.touched":
        clocks = [
            replace(clock, stopped_at=at, stop_reason="done")
            if clock.is_follow_up and clock.stopped_at is None and clock.started_at <= at
            else clock
            for clock in clocks
        ]
    if rule is None:
        return replace(after, clocks=tuple(clocks))
    for position, cadence in enumerate(rule.follow_ups):
        name = cadence_name(cadence, position)
        if _ends(cadence, before, after, event):
            clocks = _end_cadence(clocks, name, at)
        if after.status != "open" or not _triggered(cadence, before, after, event):
            continue
        clocks = _end_cadence(clocks, name, at)  # a new trigger replaces the cycle still running
        cycle = 1 + max((clock.cycle for clock in _cycles(clocks, name)), default=-1)
        for number, offset in enumerate(cadence.after, start=1):
            start = add_business(rules, rule, at, offset)
            due = add_business(rules, rule, start, cadence.grace)
            clocks.append(ClockState(clock_name(name, number), cycle, rule.name, start, due))
    return replace(after, clocks=tuple(clocks))


def task_text(cadence: FollowUpRule, lead: dict) -> str:
    """The task text with ``{lead.<field>}`` filled from the lead (missing fields stay empty)."""
    text = cadence.task
    for key in ("lead_id", "id", "name", "source", "pipeline", "stage", "owner", "team", "priority", "amount", "url"):
        value = lead.get("lead_id" if key == "id" else key)
        text = text.replace("{lead." + key + "}", "" if value is None else str(value))
    return text
