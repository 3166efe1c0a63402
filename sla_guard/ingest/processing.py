"""Apply a lead's events: replay them, store the state and clocks, (re)arm the timers."""

from __future__ import annotations

import logging
from datetime import timedelta

from redis.exceptions import RedisError

from sla_guard.core.engine import replay
from sla_guard.core.stays import stage_stays
from sla_guard.queueing import enqueue
from sla_guard.runtime import Runtime
from sla_guard.store.repository import (
    TimerChange,
    clock_ids_in_tick,
    lead_events,
    lock_lead,
    mark_processed,
    save_state,
    save_stays,
    without_own_task_echoes,
)
from sla_guard.timers import arming as timers

log = logging.getLogger("sla_guard.ingest.processing")


def process_lead(runtime: Runtime, lead_id: str) -> list[TimerChange]:
    """Recompute one lead from all its events and store the result; idempotent."""
    rules = runtime.rules.current()
    now = runtime.now()
    with runtime.db.session() as session:
        lead = lock_lead(session, lead_id, now)
        event_ids, events = lead_events(session, lead_id)
        events = without_own_task_echoes(session, lead_id, events)
        state = replay(lead_id, events, rules)
        changes = save_state(session, lead, state, rules, now)
        save_stays(session, lead_id, stage_stays(events))
        mark_processed(session, event_ids, now)
    log.info(
        "lead processed",
        extra={"lead_id": lead_id, "events": len(events), "status": state.status, "timers_changed": len(changes)},
    )
    apply_timer_changes(runtime, changes)
    if any(clock.is_follow_up and clock.stopped_at is not None for clock in state.clocks):
        _close_finished_tasks(runtime, lead_id)
    return changes


def _close_finished_tasks(runtime: Runtime, lead_id: str) -> None:
    """A follow-up step that ended (done or cancelled) closes the task it created in the CRM."""
    from sla_guard.outbox.follow_up_tasks import CLOSE_JOB, tasks_to_close

    try:
        for task_id in tasks_to_close(runtime, lead_id):
            enqueue(runtime.redis, CLOSE_JOB, task_id, queue_name=runtime.queue_name)
    except RedisError as exc:
        log.warning("follow-up tasks not closed yet, the reconciler will retry", extra={"error": type(exc).__name__})


def apply_timer_changes(runtime: Runtime, changes: list[TimerChange]) -> None:
    """Make sure the ticks that fire these clocks at their new ``next_fire_at`` exist, and
    delete the ticks they leave when no other clock is due in them.

    Redis being down is not an error here: the reconciler arms every tick the database needs
    once Redis is back.
    """
    if not changes:
        return
    now = runtime.now()
    horizon = now + timedelta(seconds=runtime.settings["SLA_GUARD_ARM_HORIZON_S"])
    shards = runtime.settings["SLA_GUARD_TIMER_SHARDS"]
    ticks = {
        timers.tick_of(change.clock_id, change.fire_at, shards)
        for change in changes
        if change.fire_at is not None and change.fire_at <= horizon
    }
    left = {
        timers.tick_of(change.clock_id, change.previous, shards)  # ticks already due are running or gone
        for change in changes
        if change.previous is not None and change.previous > now
    } - ticks
    if left:
        with runtime.db.session() as session:
            left = {tick for tick in left if not clock_ids_in_tick(session, tick[0], tick[1], shards)}
    try:
        for epoch, shard in sorted(left):  # nobody is due in that second and shard any more
            timers.disarm(runtime.redis, epoch, shard, runtime.queue_name)
        for epoch, shard in sorted(ticks):
            if epoch <= now.timestamp():
                timers.fire_now(runtime.redis, epoch, shard, shards, runtime.queue_name)
            else:
                timers.arm(runtime.redis, epoch, shard, shards, runtime.queue_name)
    except RedisError as exc:
        log.warning("timers not armed, the reconciler will retry", extra={"error": type(exc).__name__})
