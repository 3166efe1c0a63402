"""A timer fired: record the escalations a clock owes now, create their alerts, re-arm.

The timer may fire twice, late, or after the clock stopped: the decision is made again from
the database under the lead's lock, each (clock, level) is recorded once, and nothing is sent
before its time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

from sla_guard.core.engine import ClockState, Step, clock_steps, due_steps, next_fire_at, next_owner
from sla_guard.core.events import Lead, LeadEvent
from sla_guard.core.follow_ups import TASK_KIND
from sla_guard.ingest.processing import process_lead
from sla_guard.outbox import delivery
from sla_guard.outbox.crm_reassign import REASSIGNMENTS, queue_attempt, tell_crm
from sla_guard.outbox.follow_up_tasks import create_task, plan_task
from sla_guard.outbox.notify.routing import route
from sla_guard.runtime import Runtime
from sla_guard.store.models import ClockRow, LeadRow
from sla_guard.store.outbox import (
    NewEscalation,
    acknowledged_clocks,
    clock_leads,
    record_escalations,
    reload_clocks,
    set_reassigned,
)
from sla_guard.store.repository import LEAD_FIELDS, TimerChange, clock_state, fired_levels, insert_events, lock_leads
from sla_guard.timers.acknowledge import ack_url, press_value
from sla_guard.timers.arming import apply_timer_changes

log = logging.getLogger("sla_guard.timers.escalation")

EARLY_WAIT_LIMIT = timedelta(seconds=3)
"""A timer that starts this much early or less waits in the job; earlier ones are re-armed."""

REASSIGN_SOURCE = "sla-guard"
"""Inbox source of the ``lead.assigned`` events sla-guard itself writes when it reassigns."""


@dataclass
class FireResult:
    escalation_ids: list[int] = field(default_factory=list)
    alert_ids: list[int] = field(default_factory=list)
    task_ids: list[int] = field(default_factory=list)
    reassigned: bool = False
    reassignments: list[tuple[str, str, int]] = field(default_factory=list)
    """``(lead_id, new_owner, escalation_id)`` of each reassignment, for the lead's CRM."""
    early_by: timedelta | None = None
    change: TimerChange | None = None
    found: bool = False
    """False when the clock no longer exists."""
    fire_at: datetime | None = None
    """The clock's ``next_fire_at`` after this firing (None: nothing more to fire)."""


def _lead_dict(lead: LeadRow) -> dict:
    return {"lead_id": lead.lead_id, **{name: getattr(lead, name) for name in LEAD_FIELDS}}


def _record_step(
    session,
    runtime: Runtime,
    clock: ClockRow,
    lead: LeadRow,
    step: Step,
    escalation_id: int,
    now: datetime,
    result: FireResult,
) -> None:
    """Write what a newly recorded escalation brings: its alerts, its task, its reassignment."""
    rules = runtime.rules.current()
    result.escalation_ids.append(escalation_id)
    if step.kind == TASK_KIND:  # a follow-up step: its task goes to the CRM, or to the owner
        task_id = plan_task(session, rules, clock, lead, now)
        if task_id is not None:
            result.task_ids.append(task_id)
        return
    lead_fields = _lead_dict(lead)
    new_owner = next_owner(lead_fields, rules) if step.reassign else None
    if new_owner == lead.owner:
        new_owner = None
    for target in route(step.notify, lead_fields, rules, now):
        # an alert held by quiet hours waits with its claim set to the morning; delivery and the
        # reconciler take it up from then on
        alert_id = delivery.record_alert(
            session,
            target,
            now,
            rules=rules,
            clock=clock,
            escalation_id=escalation_id,
            lead=lead_fields,
            kind=step.kind,
            level=step.level,
            due_at=step.at,
            ack_url=ack_url(runtime.settings, escalation_id, target.recipient, max(now, target.not_before or now)),
            instead_of=target.instead_of,
            press_for=partial(press_value, runtime.settings, now=max(now, target.not_before or now)),
            new_owner=new_owner,
        )
        result.alert_ids.append(alert_id)
    if step.reassign:
        if new_owner:
            event = LeadEvent(
                event_id=f"reassign-{clock.id}-{step.level}",
                type="lead.assigned",
                occurred_at=now,
                lead=Lead(id=lead.lead_id, owner=new_owner),
                previous_owner=lead.owner,
            )
            insert_events(session, REASSIGN_SOURCE, [event], now)
            set_reassigned(session, escalation_id, new_owner)
            result.reassigned = True
            result.reassignments.append((lead.lead_id, new_owner, escalation_id))
            REASSIGNMENTS.record(session, lead.lead_id, new_owner, escalation_id, now)  # kept until the CRM knows
    log.info(
        "escalation recorded",
        extra={
            "lead_id": lead.lead_id,
            "clock_id": clock.id,
            "kind": step.kind,
            "level": step.level,
            "late_by_s": round((now - step.at).total_seconds(), 3),
        },
    )


def fire_clocks(runtime: Runtime, clock_ids: list[int]) -> dict[int, FireResult]:
    """Record what each clock owes now, all in one transaction; the new escalations and alerts
    of each (a clock that no longer exists gets an empty result).

    The clocks, their leads (locked in sorted order, as applying events locks them), the levels
    already recorded and the acknowledgements are read with one query each; the core decides
    per clock which steps are due; the escalations of the whole batch are recorded with one
    statement (each (clock, level) once: a step another firing recorded first brings nothing).
    Raises if any clock fails: nothing of the batch is stored then, and the caller fires the
    clocks one by one.
    """
    results = {clock_id: FireResult() for clock_id in clock_ids}
    rules = runtime.rules.current()
    with runtime.db.session() as session, session.no_autoflush:
        owners = clock_leads(session, list(results))
        if not owners:
            return results
        now = runtime.now()
        leads = lock_leads(session, sorted(set(owners.values())), now)
        clocks = reload_clocks(session, list(owners))
        fired = fired_levels(session, list(clocks))
        acknowledged = acknowledged_clocks(session, list(clocks))
        plans = []
        for clock_id, clock in sorted(clocks.items()):
            results[clock_id].found = True
            plan = _plan(rules, clock, fired[clock_id], clock_id in acknowledged, now)
            if plan is None:
                _end_without_rule(clock, now, results[clock_id])
            else:
                plans.append((clock, *plan))
        recorded = record_escalations(
            session,
            [
                NewEscalation(clock.id, clock.lead_id, step.level, step.kind, step.at, now, leads[clock.lead_id].owner)
                for clock, _state, _steps, due in plans
                for step in due
            ],
        )
        for clock, state, steps, due in plans:
            result = results[clock.id]
            for step in due:
                escalation_id = recorded.get((clock.id, step.level))
                if escalation_id is not None:
                    _record_step(session, runtime, clock, leads[clock.lead_id], step, escalation_id, now, result)
                fired[clock.id].add(step.level)
            _move_on(clock, state, steps, fired[clock.id], now, result)
        session.flush()
    return results


def _plan(rules, clock: ClockRow, fired: set[int], acknowledged: bool, now: datetime):
    """``(state, steps, steps due now)`` of one locked clock, or None when its rule is gone."""
    rule = rules.rule(clock.rule_name)
    if rule is None:
        return None
    state: ClockState = clock_state(clock)
    steps = [] if acknowledged else clock_steps(state, rule, rules)  # someone took the lead: no further
    return state, steps, due_steps(state, steps, fired, now)


def _end_without_rule(clock: ClockRow, now: datetime, result: FireResult) -> None:
    if clock.stopped_at is None:
        clock.stopped_at, clock.stop_reason = now, "rule_removed"
    previous, clock.next_fire_at = clock.next_fire_at, None
    result.change = TimerChange(clock.id, clock.lead_id, None, previous)
    log.warning("clock ended: its rule is gone", extra={"lead_id": clock.lead_id, "clock_id": clock.id})


def _move_on(clock: ClockRow, state: ClockState, steps, fired: set[int], now: datetime, result: FireResult) -> None:
    """Set the clock's next firing time after the steps recorded now."""
    following = next_fire_at(state, steps, fired)
    if following is not None and following > now and not result.escalation_ids:
        result.early_by = following - now
    if following != clock.next_fire_at:
        result.change = TimerChange(clock.id, clock.lead_id, following, clock.next_fire_at)
        clock.next_fire_at = following
    result.fire_at = following


def fire_clock(runtime: Runtime, clock_id: int) -> FireResult:
    """Record what the clock owes now; return the new escalations and alerts."""
    return fire_clocks(runtime, [clock_id])[clock_id]


INLINE_DELIVERY_S = 20.0
"""A timer job sends its alerts itself for this long; later ones become delivery jobs, so slow
channels never push the job past its timeout."""


def run_timer(runtime: Runtime, clock_id: int, fire_epoch: int | None = None) -> FireResult:
    """Fire one clock and do what follows at once: wait out a slightly early start, deliver,
    re-arm (the timer loop fires whole batches: :func:`fire_clocks`, :func:`after_firing`)."""
    if fire_epoch is not None:
        early = datetime.fromtimestamp(fire_epoch, UTC) - runtime.now()
        if timedelta(0) < early <= EARLY_WAIT_LIMIT:
            time.sleep(early.total_seconds())
    result = fire_clock(runtime, clock_id)
    if result.early_by is not None and result.early_by <= EARLY_WAIT_LIMIT and result.change is None:
        time.sleep(result.early_by.total_seconds())
        result = fire_clock(runtime, clock_id)
    if result.change is not None:
        apply_timer_changes(runtime, [result.change])
    after_firing(runtime, clock_id, result)
    return result


def after_firing(runtime: Runtime, clock_id: int, result: FireResult, inline: bool = True) -> None:
    """What follows a committed firing: deliver its alerts, create its follow-up tasks, apply
    and report a reassignment. Alerts go out here for :data:`INLINE_DELIVERY_S` (none when
    ``inline`` is False); the rest become delivery jobs. Never raises for one item's trouble:
    every item is a row the reconciler retries."""
    started = time.monotonic()

    def in_time() -> bool:
        return inline and time.monotonic() - started <= INLINE_DELIVERY_S

    for alert_id in result.alert_ids:
        if not in_time():
            delivery.queue_delivery(runtime, alert_id)  # slow channels: the rest go out as jobs of their own
            continue
        try:
            delivery.deliver(runtime, alert_id)
        except Exception:  # one alert's trouble must not hold up the others; the reconciler retries it
            log.exception("alert delivery crashed", extra={"alert_id": alert_id, "clock_id": clock_id})
    for task_id in result.task_ids:
        try:
            create_task(runtime, task_id)
        except Exception:  # the reconciler retries the task; the timer's other work goes on
            log.exception("follow-up task creation crashed", extra={"task_id": task_id, "clock_id": clock_id})
    for lead_id in dict.fromkeys(lead_id for lead_id, _owner, _escalation in result.reassignments):
        process_lead(runtime, lead_id)
    for lead_id, new_owner, escalation_id in result.reassignments:
        try:
            if in_time():
                tell_crm(runtime, lead_id, new_owner, escalation_id)
            elif not queue_attempt(runtime, lead_id, new_owner, escalation_id):  # slow CRMs: a job tells it
                log.error(
                    "reassignment not sent to the CRM: Redis is unavailable",
                    extra={"lead_id": lead_id, "escalation_id": escalation_id, "crm_status": "failed"},
                )
        except Exception:  # a CRM problem must not break the timer; the reassignment itself stands
            log.exception(
                "telling the CRM of a reassignment crashed",
                extra={"lead_id": lead_id, "escalation_id": escalation_id, "clock_id": clock_id},
            )
