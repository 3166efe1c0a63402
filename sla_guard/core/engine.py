"""Pure decisions: what a lead's state and SLA clocks are after its events, and what is due when.

No I/O here. The worker loads a lead's events from the database, calls :func:`replay`, and
stores what comes out; when a timer fires it calls :func:`due_steps` to learn which alerts are
owed. Because the state is recomputed from every event of the lead, sorted by ``occurred_at``,
an event that arrives late or twice cannot undo a newer state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sla_guard.core import follow_ups
from sla_guard.core.clocks import (  # noqa: F401 (re-exported: the engine's vocabulary)
    CANCELLED,
    FIRST_TOUCH,
    FOLLOW_UP_PREFIX,
    STAGE_PREFIX,
    WARNING_LEVEL,
    ClockState,
    LeadState,
    Step,
    add_business,
    business,
)
from sla_guard.core.events import LeadEvent
from sla_guard.core.rules.matching import match_rule
from sla_guard.core.rules.schema import ROLES, ClockRule, Rule, RuleSet


def clock_rule(rule: Rule, clock_name: str) -> ClockRule | None:
    """The part of ``rule`` that defines the clock called ``clock_name``."""
    if clock_name == FIRST_TOUCH:
        return rule.first_touch
    if clock_name.startswith(STAGE_PREFIX):
        stage = rule.stages.get(clock_name[len(STAGE_PREFIX) :])
        return stage.as_clock() if stage else None
    return None


def _stop(clock: ClockState, at: datetime, reason: str) -> ClockState:
    if clock.stopped_at is not None:
        return clock
    if clock.paused_at is not None:
        at = clock.paused_at  # a clock stopped during a pause stopped counting when the pause began
    return replace(clock, stopped_at=max(at, clock.started_at), stop_reason=reason)


def _budget(rule: Rule, clock: ClockState) -> timedelta | None:
    spec = clock_rule(rule, clock.name)
    return spec.within if spec else None


def _pause(clock: ClockState, at: datetime, rules: RuleSet) -> ClockState:
    """Stop counting: bank the business time used so far (follow-up tasks are not paused)."""
    if clock.stopped_at is not None or clock.paused_at is not None or clock.is_follow_up:
        return clock
    rule = rules.rule(clock.rule_name)
    calendar = rules.calendar_for(rule) if rule else None
    used = calendar.between(clock.counting_since, at) if calendar else at - clock.counting_since
    return replace(clock, paused_at=at, budget_used=clock.budget_used + max(used, timedelta(0)))


def _resume(clock: ClockState, at: datetime, rules: RuleSet) -> ClockState:
    """Count again from ``at`` with the budget that was left; the deadline moves accordingly."""
    if clock.paused_at is None or clock.stopped_at is not None:
        return clock
    rule = rules.rule(clock.rule_name)
    budget = _budget(rule, clock) if rule else None
    if budget is None:
        return replace(clock, paused_at=None, resumed_at=at)
    left = max(business(rules, rule, budget) - clock.budget_used, timedelta(0))
    due_at = rules.calendar_for(rule).add(at, left)
    return replace(clock, paused_at=None, resumed_at=at, due_at=due_at)


def _pausing(state: LeadState, rules: RuleSet, stage: str | None) -> bool:
    rule = rules.rule(state.rule_name)
    return bool(rule and stage and stage in rule.pause_in_stages)


def _start_first_touch(state: LeadState, rules: RuleSet) -> LeadState:
    """(Re)start the first-touch clock under the rule matching the lead now."""
    rule = match_rule(rules, state.fields)
    others = tuple(c for c in state.clocks if c.name != FIRST_TOUCH)
    if rule is None or rule.first_touch is None or state.created_at is None:
        return replace(state, rule_name=rule.name if rule else None, clocks=others)
    due_at = add_business(rules, rule, state.created_at, rule.first_touch.within)
    clock = ClockState(FIRST_TOUCH, 0, rule.name, state.created_at, due_at)
    if state.first_touch_at is not None:
        clock = _stop(clock, state.first_touch_at, "touched")
    return replace(state, rule_name=rule.name, clocks=others + (clock,))


def _first_touch_running(state: LeadState) -> bool:
    return any(c.name == FIRST_TOUCH and c.stopped_at is None for c in state.clocks)


def _stop_clocks(state: LeadState, at: datetime, reason: str, names: set[str] | None = None) -> LeadState:
    """Stop the named clocks, or every SLA clock (follow-up steps end by their own rules)."""
    clocks = tuple(
        _stop(c, at, reason) if (c.name in names if names is not None else not c.is_follow_up) else c
        for c in state.clocks
    )
    return replace(state, clocks=clocks)


def _enter_stage(state: LeadState, stage: str, at: datetime, rules: RuleSet) -> LeadState:
    """Close the running stage clocks and start the new stage's clock, if its rule has one."""
    state = _stop_clocks(state, at, "left_stage", {c.name for c in state.clocks if c.name.startswith(STAGE_PREFIX)})
    rule = rules.rule(state.rule_name)
    if rule is None or stage not in rule.stages:
        return state
    name = STAGE_PREFIX + stage
    cycle = sum(1 for c in state.clocks if c.name == name)
    budget = rule.stages[stage].max
    clock = ClockState(name, cycle, rule.name, at, add_business(rules, rule, at, budget))
    return replace(state, clocks=state.clocks + (clock,))


def _change_stage(state: LeadState, old_stage: str | None, at: datetime, rules: RuleSet) -> LeadState:
    """A stage change: pausing stages freeze every running clock; leaving one resumes them.

    Moving into a stage listed in the rule's ``pause_in_stages`` is not treated as leaving the
    stage before it: the clocks keep their cycle and resume with the budget they had left. When
    the lead comes out of the pause, the move counts as a move from the stage before the pause.
    """
    new_stage = state.fields.get("stage")
    if state.status != "open":
        state = replace(state, status="open", closed_at=None, outcome=None, reason=None)
    if _pausing(state, rules, new_stage):
        if not _pausing(state, rules, old_stage):
            state = replace(
                state, stage_before_pause=old_stage, clocks=tuple(_pause(clock, at, rules) for clock in state.clocks)
            )
        return state
    if _pausing(state, rules, old_stage):
        state = replace(state, clocks=tuple(_resume(clock, at, rules) for clock in state.clocks))
        old_stage, state = state.stage_before_pause, replace(state, stage_before_pause=None)
    if new_stage and new_stage != state.initial_stage:
        state = _stop_clocks(state, at, "stage_changed", {FIRST_TOUCH})
    if new_stage and (new_stage != old_stage or not any(c.name.startswith(STAGE_PREFIX) for c in state.clocks)):
        state = _enter_stage(state, new_stage, at, rules)
    return state


def apply_event(state: LeadState, event: LeadEvent, rules: RuleSet) -> LeadState:
    """The lead's state after one more event (events must come in ``occurred_at`` order)."""
    return follow_ups.advance(state, _apply_sla(state, event, rules), event, rules)


def _apply_sla(state: LeadState, event: LeadEvent, rules: RuleSet) -> LeadState:
    at = event.occurred_at
    given = event.lead.fields()
    given.pop("id", None)
    if "tags" in given:
        given["tags"] = list(given["tags"])
    old_stage = state.fields.get("stage")
    state = replace(state, fields={**state.fields, **given}, last_event_at=at)
    kind = event.type
    if kind == "lead.created":
        if state.known:
            return state
        state = replace(state, known=True, created_at=at, initial_stage=state.fields.get("stage"))
        state = _start_first_touch(state, rules)
        if state.fields.get("stage"):
            state = _enter_stage(state, state.fields["stage"], at, rules)
        return state
    if kind == "lead.updated":
        if event.reason and state.status == "lost":  # a loss reason learnt after the closure
            state = replace(state, reason=event.reason)
        if state.known and _first_touch_running(state):
            state = _start_first_touch(state, rules)
        return state
    if kind == "lead.assigned":
        return state
    if kind == "lead.touched":
        if state.first_touch_at is None:
            state = replace(state, first_touch_at=at)
        return _stop_clocks(state, at, "touched", {FIRST_TOUCH})
    if kind == "lead.stage_changed":
        return _change_stage(state, old_stage, at, rules)
    if kind == "lead.closed":
        state = replace(
            state,
            status=event.outcome or "closed",
            closed_at=at,
            outcome=event.outcome,
            reason=event.reason,
        )
        return _stop_clocks(state, at, "closed")
    return state


def replay(lead_id: str, events: list[LeadEvent], rules: RuleSet) -> LeadState:
    """Fold a lead's events, oldest first, into its state and clocks.

    ``events`` are taken in ``occurred_at`` order, whatever order they are given in (ties keep
    the order given: the order of arrival). A lead whose creation
    sla-guard never saw (its first event is a touch or an update) is tracked, but gets no
    first-touch clock: when it was created is unknown, so no deadline can be honest.
    """
    state = LeadState(lead_id=lead_id)
    for event in sorted(events, key=lambda event: event.occurred_at):
        state = apply_event(state, event, rules)
    return state


def without_own_task_echoes(events: list[LeadEvent], closed_by_us: dict[str, datetime]) -> list[LeadEvent]:
    """Drop touches that only report a follow-up task sla-guard itself closed (``closed_by_us``:
    CRM task id → when sla-guard closed it): the CRM echoes the completion back, and it must
    not count as the manager's touch. A task the manager completed before sla-guard closed it
    is a real touch and is kept."""

    def echo(event: LeadEvent) -> bool:
        closed_at = closed_by_us.get(event.touch.task_id) if event.type == "lead.touched" and event.touch else None
        return closed_at is not None and event.occurred_at >= closed_at

    return [event for event in events if not echo(event)]


def task_touches(events: list[LeadEvent]) -> set[str]:
    """The CRM task ids that touches among ``events`` report as completed."""
    return {e.touch.task_id for e in events if e.type == "lead.touched" and e.touch and e.touch.task_id}


@dataclass(frozen=True)
class ClockPlan:
    """What the store needs decided while it writes a lead's clocks, under one rules version."""

    rules: RuleSet

    @property
    def version(self) -> str:
        return self.rules.version

    def next_fire(self, clock: ClockState, fired: set[int]) -> datetime | None:
        """When the clock's timer must next fire (None: nothing more is owed, or its rule is gone)."""
        rule = self.rules.rule(clock.rule_name)
        if rule is None:
            return None
        return next_fire_at(clock, clock_steps(clock, rule, self.rules), fired)

    def dropped_reason(self, rule_name: str | None) -> str:
        """Why a running clock the replay no longer produces stops."""
        return "superseded" if self.rules.rule(rule_name) else "rule_removed"


def clock_steps(clock: ClockState, rule: Rule, rules: RuleSet) -> list[Step]:
    """Every alert the clock owes if it never stops: the warning, then each ladder rung."""
    if clock.is_follow_up:
        return follow_ups.steps(clock, rule, rules)
    spec = clock_rule(rule, clock.name)
    if spec is None:
        return []
    calendar = rules.calendar_for(rule)
    family = FIRST_TOUCH if clock.name == FIRST_TOUCH else "stage"
    steps = []
    within = business(rules, rule, spec.within)
    offset = None
    if spec.warn_at and spec.warn_at.share is not None:
        offset = within * spec.warn_at.share
    elif spec.warn_at and spec.warn_at.before is not None:
        offset = within - business(rules, rule, spec.warn_at.before)
    if offset is not None and timedelta(0) < offset < within:
        warn_at = calendar.add(clock.counting_since, max(offset - clock.budget_used, timedelta(0)))
        steps.append(Step(WARNING_LEVEL, f"{family}.warning", warn_at, ("owner",)))
    for index, level in enumerate(spec.escalate, start=1):
        at = calendar.add(clock.due_at, business(rules, rule, level.after)) if level.after else clock.due_at
        steps.append(Step(index, f"{family}.breach", at, tuple(level.notify), level.reassign))
    return steps


def pending_steps(clock: ClockState, steps: list[Step], fired_levels: set[int]) -> list[Step]:
    """Steps not yet fired that can still fire (a stopped or paused clock owes nothing now)."""
    if clock.stopped_at is not None or clock.paused_at is not None:
        return []
    return [step for step in steps if step.level not in fired_levels]


def next_fire_at(clock: ClockState, steps: list[Step], fired_levels: set[int]) -> datetime | None:
    """When the clock's timer must next fire, or None when nothing more is owed."""
    pending = pending_steps(clock, steps, fired_levels)
    return min((step.at for step in pending), default=None)


def due_steps(clock: ClockState, steps: list[Step], fired_levels: set[int], now: datetime) -> list[Step]:
    """The steps owed at ``now``; never one whose time has not come."""
    return [step for step in pending_steps(clock, steps, fired_levels) if step.at <= now]


@dataclass(frozen=True)
class Target:
    """One delivery of an alert: a channel, and the person it is meant for (None for a bare channel)."""

    channel: str
    recipient: str | None
    role: str | None


def resolve_person(role: str, fields: dict[str, Any], rules: RuleSet) -> str | None:
    """Who plays ``role`` for a lead: its owner, the owner's manager, or the head of its team."""
    owner = fields.get("owner")
    if role == "owner":
        return owner
    person = rules.people.get(owner) if owner else None
    if role == "manager":
        return person.manager if person else None
    if role == "head":
        team_name = fields.get("team") or (person.team if person else None)
        team = rules.teams.get(team_name) if team_name else None
        return team.head if team else None
    return None


def resolve_targets(notify: tuple[str, ...], fields: dict[str, Any], rules: RuleSet) -> list[Target]:
    """Turn ``notify`` (roles and channel names) into deliveries, without duplicates.

    A role whose person is unknown or has no channel is delivered to the ``log`` channel, so
    the escalation is still on record and visible.
    """
    out: list[Target] = []
    for target in notify:
        if target in ROLES:
            person = resolve_person(target, fields, rules)
            spec = rules.people.get(person) if person else None
            channels = spec.channels if spec and spec.channels else ("log",)
            out.extend(Target(channel, person, target) for channel in channels)
        else:
            out.append(Target(target, None, None))
    unique: dict[tuple[str, str | None], Target] = {}
    for item in out:
        unique.setdefault((item.channel, item.recipient), item)
    return list(unique.values())


def next_owner(fields: dict[str, Any], rules: RuleSet) -> str | None:
    """Who takes the lead on ``reassign``: the next member of the owner's team, in rotation."""
    owner = fields.get("owner")
    person = rules.people.get(owner) if owner else None
    team_name = fields.get("team") or (person.team if person else None)
    team = rules.teams.get(team_name) if team_name else None
    if team is None or not team.members:
        return person.manager if person else None
    members = list(team.members)
    if owner in members:
        return members[(members.index(owner) + 1) % len(members)] if len(members) > 1 else None
    return members[0]
