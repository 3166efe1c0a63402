"""Apply a lead's events: replay them, store the state and clocks, (re)arm the timers."""

from __future__ import annotations

import logging
from datetime import timedelta

from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from sla_guard.core.bounds import clean_text
from sla_guard.core.engine import ClockPlan, replay, task_touches, without_own_task_echoes
from sla_guard.core.stays import stage_stays
from sla_guard.outbox.follow_up_tasks import queue_closes
from sla_guard.runtime import Runtime
from sla_guard.store.quarantine import quarantine, release
from sla_guard.store.repository import (
    TimerChange,
    closed_task_times,
    events_of_leads,
    lock_leads,
    mark_processed,
    save_state,
    save_stays,
)
from sla_guard.timers import arming as timers

log = logging.getLogger("sla_guard.ingest.processing")


def process_leads(runtime: Runtime, lead_ids: list[str]) -> list[TimerChange]:
    """Recompute these leads from all their events and store the results in one transaction
    (one commit for the batch, their rows locked and their events read in one statement each);
    idempotent. Leads are locked in sorted order, so two batches never wait on each other in a
    circle. Raises if any lead fails: nothing of the batch is stored then, and the caller
    applies the leads one by one."""
    rules = runtime.rules.current()
    now = runtime.now()
    ordered = sorted(set(lead_ids))
    changes: list[TimerChange] = []
    finished_tasks = []
    with runtime.db.session() as session:
        leads = lock_leads(session, ordered, now)
        events_by_lead = events_of_leads(session, ordered)
        applied: list[int] = []
        for lead_id in ordered:
            event_ids, events = events_by_lead[lead_id]
            events = without_own_task_echoes(events, closed_task_times(session, lead_id, task_touches(events)))
            state = replay(lead_id, events, rules)
            lead_changes = save_state(session, leads[lead_id], state, ClockPlan(rules), now)
            save_stays(session, lead_id, stage_stays(events))
            changes += lead_changes
            applied += event_ids
            if any(clock.is_follow_up and clock.stopped_at is not None for clock in state.clocks):
                finished_tasks.append(lead_id)
            log.info(
                "lead processed",
                extra={
                    "lead_id": lead_id,
                    "events": len(events),
                    "status": state.status,
                    "timers_changed": len(lead_changes),
                },
            )
        mark_processed(session, applied, now)
        release(session, ordered)  # applied: no longer set aside, if they were
    apply_timer_changes(runtime, changes)
    for lead_id in finished_tasks:
        _close_finished_tasks(runtime, lead_id)
    return changes


def process_lead(runtime: Runtime, lead_id: str) -> list[TimerChange]:
    """Recompute one lead from all its events and store the result; idempotent."""
    return process_leads(runtime, [lead_id])


TRANSIENT = (OperationalError, InterfaceError, PoolTimeout, RedisError, ConnectionError, TimeoutError)
"""Failures of the services, not of the lead: the lead is applied again later, never set aside."""


def apply_lead(runtime: Runtime, lead_id: str) -> bool:
    """Apply ``lead_id``'s events; True when applied. Never raises.

    A failure of the database or Redis is logged and left to the reconciler. Any other failure
    belongs to the lead (an event it cannot apply): the lead is quarantined with the reason, so
    that the loop calling this goes on with the others, and is applied again only when retried
    (``sla-guard quarantine retry``, ``POST /api/quarantine/<lead id>/retry``) or when a new
    event arrives for it.
    """
    try:
        process_lead(runtime, lead_id)
        return True
    except TRANSIENT as exc:
        log.warning(
            "lead not processed yet, it will be retried", extra={"lead_id": lead_id, "error": type(exc).__name__}
        )
        return False
    except Exception as exc:
        log.exception("lead quarantined: its events cannot be applied", extra={"lead_id": lead_id})
        reason = clean_text(str(exc) or type(exc).__name__, 2000)
        try:
            with runtime.db.session() as session:
                quarantine(session, lead_id, type(exc).__name__[:200], reason, runtime.now())
        except Exception:  # the lead stays unapplied; the reconciler tries it again
            log.exception("lead not quarantined", extra={"lead_id": lead_id})
        return False


def _close_finished_tasks(runtime: Runtime, lead_id: str) -> None:
    """A follow-up step that ended (done or cancelled) closes the task it created in the CRM."""
    try:
        queue_closes(runtime, lead_id)
    except RedisError as exc:
        log.warning("follow-up tasks not closed yet, the reconciler will retry", extra={"error": type(exc).__name__})


def apply_timer_changes(runtime: Runtime, changes: list[TimerChange]) -> None:
    """Arm the timers of clocks whose ``next_fire_at`` moved into the arming horizon (one due
    already fires at once), and remove those of clocks that stopped or moved beyond it.

    Redis being down is not an error here: the reconciler arms every timer the database needs
    once Redis is back.
    """
    if not changes:
        return
    horizon = runtime.now() + timedelta(seconds=runtime.settings.arm_horizon_s)
    near = {c.clock_id: c.fire_at for c in changes if c.fire_at is not None and c.fire_at <= horizon}
    try:
        timers.disarm(runtime.redis, runtime.queue_name, [c.clock_id for c in changes if c.clock_id not in near])
        timers.arm(runtime.redis, runtime.queue_name, near)
    except RedisError as exc:
        log.warning("timers not armed, the reconciler will retry", extra={"error": type(exc).__name__})
