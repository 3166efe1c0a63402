"""The timer loop: fires clocks whose timer has come, a fraction of a second after, and records
what each owes: its escalations, their alerts, a follow-up task, a reassignment.

Every worker process runs :func:`timer_loop` in a thread of its own. It sleeps until the
earliest armed timer (at most ``SLA_GUARD_TIMER_POLL_S``), claims the due clocks from the
sorted set (see :mod:`sla_guard.ingest.processing`) in batches, and fires each batch itself, in one
transaction (:func:`fire_clocks`). The timer may fire twice, late, early or after the clock
stopped: the decision is made again from the database under the lead's lock, each (clock,
level) is recorded once, and nothing is sent before its time. The loop then settles the
batch's timers, applies the leads a reassignment changed, and hands the new outbox items
(alerts, tasks, pushes to a CRM) to a few threads for their first attempt
(:class:`~sla_guard.outbox.base.FirstAttempts`), so the next batch is claimed while the last
one's alerts are on their way. Nothing else a worker does (RQ jobs, applying a backlog of
events) stands in front of a timer: the loop never waits for a job slot, and while it fires
the event pumps of every worker step aside (:func:`~sla_guard.ingest.processing.wait_for_timers`).

Several loops on several workers claim atomically, so each clock goes to exactly one of them;
a worker that dies mid-batch leaves its lease behind and the clocks are claimed again when it
runs out. A clock that fails for a reason of its own is tried again a few times, then set
aside with its lead in quarantine (:mod:`sla_guard.timers.failures`); one that fails because
the database or Redis is away is tried again shortly, as often as it takes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from redis.exceptions import RedisError

from sla_guard.core.engine import ClockState, Step, clock_steps, due_steps, next_fire_at, next_owner
from sla_guard.core.events import Lead, LeadEvent
from sla_guard.core.follow_ups import TASK_KIND
from sla_guard.ingest.processing import apply_leads, claim_due, mark_firing, next_due, settle, unmark_firing
from sla_guard.outbox.base import FirstAttempts, Item, attempt_now
from sla_guard.outbox.crm_reassign import REASSIGNMENTS
from sla_guard.outbox.delivery import ALERTS, Escalated, record_alert
from sla_guard.outbox.follow_up_tasks import TASKS, plan_task
from sla_guard.outbox.notify.routing import route
from sla_guard.runtime import TRANSIENT, Runtime
from sla_guard.store.leads import lead_fields
from sla_guard.store.models import ClockRow, LeadRow
from sla_guard.store.outbox import (
    NewEscalation,
    acknowledged_clocks,
    clock_leads,
    record_escalations,
    reload_clocks,
    set_reassigned,
)
from sla_guard.store.repository import TimerChange, clock_state, fired_levels, insert_events, lock_leads
from sla_guard.timers import failures
from sla_guard.timers.acknowledge import ack_url, press_value

log = logging.getLogger("sla_guard.timers.firing")

BATCH = 50
"""Most clocks fired in one transaction."""

UNAVAILABLE_RETRY_S = 2.0
"""When a clock that could not be fired because the database or Redis was away is tried again."""

MOST_PER_PASS = 2000
"""Most clocks one pass of the loop fires before it looks at the clock again."""

FIRING_MARK_S = 30.0
"""How long a batch being fired holds the event pumps back at most (a worker that died mid-batch)."""

REASSIGN_SOURCE = "sla-guard"
"""Inbox source of the ``lead.assigned`` events sla-guard itself writes when it reassigns."""


@dataclass
class FireResult:
    escalation_ids: list[int] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    """The outbox items the firing wrote (alerts, a task, a push to the CRM), in that order."""
    reassignments: list[tuple[str, str, int]] = field(default_factory=list)
    """``(lead_id, new_owner, escalation_id)`` of each reassignment, for the lead's CRM."""
    change: TimerChange | None = None
    fire_at: datetime | None = None
    """The clock's ``next_fire_at`` after this firing (None: nothing more to fire)."""

    @property
    def alert_ids(self) -> list[int]:
        return [item_id for kind, item_id in self.items if kind is ALERTS]

    @property
    def reassigned(self) -> bool:
        return bool(self.reassignments)


AfterFiring = Callable[[int, list[Item]], None]
"""What is done with a fired clock's new outbox items once its batch is committed (by default,
their first attempts here and now)."""


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
            result.items.append((TASKS, task_id))
        return
    fields = lead_fields(lead)
    new_owner = next_owner(fields, rules) if step.reassign else None
    if new_owner == lead.owner:
        new_owner = None
    about = Escalated(rules, clock, escalation_id, fields)
    for target in route(step.notify, fields, rules, now):
        # an alert held by quiet hours waits with its claim set to the morning; delivery and the
        # reconciler take it up from then on
        alert_id = record_alert(
            session,
            about,
            target,
            now,
            kind=step.kind,
            level=step.level,
            due_at=step.at,
            ack_url=ack_url(runtime.settings, escalation_id, target.recipient, max(now, target.not_before or now)),
            instead_of=target.instead_of,
            press_for=partial(press_value, runtime.settings, now=max(now, target.not_before or now)),
            new_owner=new_owner,
        )
        result.items.append((ALERTS, alert_id))
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
            result.reassignments.append((lead.lead_id, new_owner, escalation_id))
            push = REASSIGNMENTS.record(session, lead.lead_id, new_owner, escalation_id, now)  # until the CRM knows
            result.items.append((REASSIGNMENTS, push))
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
            _move_on(clock, state, steps, fired[clock.id], result)
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


def _move_on(clock: ClockRow, state: ClockState, steps, fired: set[int], result: FireResult) -> None:
    """Set the clock's next firing time after the steps recorded now."""
    following = next_fire_at(state, steps, fired)
    if following != clock.next_fire_at:
        result.change = TimerChange(clock.id, clock.lead_id, following, clock.next_fire_at)
        clock.next_fire_at = following
    result.fire_at = following


def fire_batch(runtime: Runtime, clock_ids: list[int], lease: float, then: AfterFiring | None = None) -> int:
    """Fire the claimed clocks in one transaction, settle their timers, and hand each fired
    clock on (:func:`hand_on`); return how many fired.

    If the batch fails, its clocks are fired one by one, so one clock's trouble never holds up
    the others. A clock the database or Redis kept from firing is tried again in
    :data:`UNAVAILABLE_RETRY_S`; one that failed on its own is retried a few times, then set
    aside (:func:`sla_guard.timers.failures.failed`).
    """
    unavailable: list[int] = []
    failed: dict[int, Exception] = {}
    try:
        results = fire_clocks(runtime, clock_ids)
    except TRANSIENT:  # the database or Redis is away: try again soon, not after the lease
        log.warning("clocks not fired yet, the database or Redis is unavailable", extra={"clocks": len(clock_ids)})
        results, unavailable = {}, list(clock_ids)
    except Exception:
        log.warning("timer batch not fired; firing its clocks one by one", exc_info=True)
        results = {}
        for clock_id in clock_ids:
            try:
                results.update(fire_clocks(runtime, [clock_id]))
            except TRANSIENT:
                unavailable.append(clock_id)
            except Exception as exc:  # one clock's trouble must not hold up the others
                log.exception("clock not fired", extra={"clock_id": clock_id})
                failed[clock_id] = exc
    now = runtime.now()
    horizon = now + timedelta(seconds=runtime.settings.arm_horizon_s)
    settle_at = {
        clock_id: result.fire_at if result.fire_at is not None and result.fire_at <= horizon else None
        for clock_id, result in results.items()
    }
    settle_at.update(dict.fromkeys(unavailable, now + timedelta(seconds=UNAVAILABLE_RETRY_S)))
    try:
        settle_at.update(failures.failed(runtime, failed))
    except Exception:  # the failed clocks keep their lease and are tried again when it runs out
        log.exception("failures of clocks not recorded", extra={"clocks": len(failed)})
    try:
        if results:
            failures.forget(runtime, list(results))
        settle(runtime.redis, runtime.queue_name, lease, settle_at)
    except RedisError:  # the lease runs out and the clocks are claimed again
        log.warning("timers not settled, the database decides when their lease ends", extra={"clocks": len(settle_at)})
    hand_on(runtime, results, then)
    return len(results)


def hand_on(runtime: Runtime, results: dict[int, FireResult], then: AfterFiring | None = None) -> None:
    """What follows committed firings: each clock's alerts and task go to ``then`` at once; then
    the leads a reassignment changed are applied (their ``lead.assigned`` events are in the
    inbox), and only then is each push of a reassignment to the CRM handed on, so the CRM never
    hears of an owner the lead does not have here yet. A lead that could not be applied leaves
    its push to the reconciler."""
    send = then or (lambda _clock_id, items: attempt_now(runtime, items))
    for clock_id, result in results.items():
        items = [item for item in result.items if item[0] is not REASSIGNMENTS]
        if items:
            send(clock_id, items)
    reassigned = list(dict.fromkeys(lead for result in results.values() for lead, _owner, _id in result.reassignments))
    applied = set(apply_leads(runtime, reassigned)) if reassigned else set()
    for clock_id, result in results.items():
        pushes = [item for item in result.items if item[0] is REASSIGNMENTS]
        if pushes and all(lead in applied for lead, _owner, _id in result.reassignments):
            send(clock_id, pushes)


def fire_due(runtime: Runtime, then: AfterFiring | None = None, batch: int = BATCH) -> int:
    """Claim every clock due now and fire it, batch by batch; return how many were claimed.

    While a batch is being fired it is marked in Redis, so that every worker's event pump steps
    aside (:func:`sla_guard.ingest.processing.timer_work_waiting`)."""
    claimed = 0
    token = f"{os.getpid()}-{threading.get_ident()}"
    while claimed < MOST_PER_PASS:
        clock_ids, lease = claim_due(runtime.redis, runtime.queue_name, runtime.now().timestamp(), batch)
        if not clock_ids:
            break
        mark_firing(runtime.redis, runtime.queue_name, token, time.time() + FIRING_MARK_S)
        try:
            fire_batch(runtime, clock_ids, lease, then)
        finally:
            unmark_firing(runtime.redis, runtime.queue_name, token)
        claimed += len(clock_ids)
    return claimed


def timer_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Run until ``stop`` is set: fire due clocks as soon as their timers come."""
    poll_s = runtime.settings.timer_poll_s
    first_attempts = FirstAttempts(runtime)

    def deliver(_clock_id: int, items: list[Item]) -> None:
        first_attempts(items)

    try:
        while not stop.is_set():
            try:
                if fire_due(runtime, deliver):
                    continue
                upcoming = next_due(runtime.redis, runtime.queue_name)
                wait = poll_s if upcoming is None else min(poll_s, max(0.0, upcoming - runtime.now().timestamp()))
            except RedisError as exc:
                log.warning("timer loop waits for Redis", extra={"error": type(exc).__name__})
                wait = 1.0
            except Exception:  # the loop must outlive any one bad pass
                log.exception("timer loop pass failed")
                wait = 1.0
            if wait > 0:
                stop.wait(wait)
    finally:
        first_attempts.close()
