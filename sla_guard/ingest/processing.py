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
    save_states,
    save_stays,
)
from sla_guard.timers import arming as timers

log = logging.getLogger("sla_guard.ingest.processing")

APPLY_BATCH = 100
"""Leads applied per transaction: one commit and about a dozen statements for the lot (a
transaction of 100 new leads takes some 50 ms of CPU)."""

SQLITE_APPLY_BATCH = 20
"""Leads applied per transaction on SQLite, whose one write lock the web's inbox commits and the
timers wait for: about 10 ms each."""


def batch_size(runtime: Runtime) -> int:
    """Most leads :func:`apply_leads` should be given at once on this runtime's database."""
    return SQLITE_APPLY_BATCH if runtime.db.dialect == "sqlite" else APPLY_BATCH


def process_leads(runtime: Runtime, lead_ids: list[str]) -> list[TimerChange]:
    """Recompute these leads from all their events and store the results in one transaction;
    idempotent. Set-based: each kind of row (leads, events, clocks, fired levels, closed tasks,
    stage stays) is read in one statement for the whole batch and written in one flush, so a
    batch costs about a dozen round trips whatever its size. Leads are locked in sorted order,
    so two batches never wait on each other in a circle; events are replayed per lead in the
    order they happened. Raises if any lead fails: nothing of the batch is stored then, and the
    caller applies the leads one by one."""
    rules = runtime.rules.current()
    plan = ClockPlan(rules)
    now = runtime.now()
    ordered = sorted(set(lead_ids))
    with runtime.db.session() as session:
        leads = lock_leads(session, ordered, now)
        events_by_lead = events_of_leads(session, ordered)
        echoes = closed_task_times(session, {lead_id: task_touches(events_by_lead[lead_id][1]) for lead_id in ordered})
        states, stays, applied, finished_tasks = [], {}, [], []
        for lead_id in ordered:
            event_ids, events = events_by_lead[lead_id]
            events = without_own_task_echoes(events, echoes.get(lead_id, {}))
            state = replay(lead_id, events, rules)
            states.append((leads[lead_id], state))
            stays[lead_id] = stage_stays(events)
            applied += event_ids
            if any(clock.is_follow_up and clock.stopped_at is not None for clock in state.clocks):
                finished_tasks.append(lead_id)
        changes = save_states(session, states, plan, now)
        save_stays(session, stays)
        mark_processed(session, applied, now)
        release(session, ordered)  # applied: no longer set aside, if they were
    log.info(
        "leads processed",
        extra={"lead_ids": ordered, "events": len(applied), "timers_changed": len(changes)},
    )
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


def apply_leads(runtime: Runtime, lead_ids: list[str]) -> int:
    """Apply the leads in one transaction; if that fails, one by one, so that one lead's trouble
    never holds up the others (a lead that still fails is quarantined, or retried by the
    reconciler when the database or Redis failed). Returns how many were applied; never raises."""
    try:
        process_leads(runtime, lead_ids)
        return len(set(lead_ids))
    except Exception:
        log.warning("batch not applied; applying its leads one by one", exc_info=True)
    return sum(apply_lead(runtime, lead_id) for lead_id in dict.fromkeys(lead_ids))


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
