"""The workers' side of the inbox: the doorbell, the pump, and applying a lead's events.

Acknowledging a webhook costs the web one ``RPUSH`` on the doorbell (:func:`push`), a Redis
list of lead ids with new events, instead of building an RQ job. Each worker runs a
:func:`pump` that pops lead ids and applies their events: replay them, store the state and
clocks, (re)arm the timers. The list is only a doorbell: the events are in the database before
anything is pushed, and the reconciler applies any whose doorbell was lost (Redis down, a
worker killed between pop and commit).
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from sla_guard.core.bounds import clean_text
from sla_guard.core.engine import ClockPlan, replay, task_touches, without_own_task_echoes
from sla_guard.core.stays import stage_stays
from sla_guard.exceptions import TRANSIENT
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
from sla_guard.timers.arming import apply_timer_changes, wait_for_timers

log = logging.getLogger("sla_guard.ingest.processing")

PENDING_KEY = "sla-guard:{queue}:pending-leads"
"""Redis list of lead ids whose new events wait to be applied, one list per queue."""

BATCH = 100
"""Most lead ids a pump takes at once."""

TIMER_CHECK_S = 0.02
"""How often the pump asks whether timer work is waiting (it then steps aside)."""

MOST_YIELD_S = 1.0
"""Longest the pump steps aside before applying one more lead, so events are never starved."""

BUSY_BATCH = 10
"""Leads applied per transaction while timers keep firing, so that they never wait long for it."""

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


def push(redis: Redis, queue_name: str, lead_ids: list[str]) -> None:
    """Ring the doorbell for ``lead_ids`` (raises ``RedisError`` when Redis is down)."""
    if lead_ids:
        redis.rpush(PENDING_KEY.format(queue=queue_name), *lead_ids)


def take(redis: Redis, queue_name: str, wait_s: float) -> list[str]:
    """Up to :data:`BATCH` distinct lead ids, waiting up to ``wait_s`` for the first one."""
    key = PENDING_KEY.format(queue=queue_name)
    first = redis.blpop([key], timeout=wait_s) if wait_s > 0 else redis.lpop(key)
    if not first:
        return []
    head = first[1] if isinstance(first, tuple | list) else first
    rest = redis.lpop(key, BATCH - 1) or []
    return list(dict.fromkeys(item.decode() for item in [head, *rest]))


def drain(runtime: Runtime, wait_s: float = 0, yield_to_timers: bool = False) -> int:
    """Apply the events of every lead waiting now; return how many leads were processed.

    With ``yield_to_timers`` the pump pauses before a lead while timer work is waiting (due,
    queued or running timers): alerts go first, the backlog after."""
    done = 0
    checked = 0.0
    while True:
        lead_ids = take(runtime.redis, runtime.queue_name, wait_s if done == 0 else 0)
        if not lead_ids:
            return done
        start = 0
        while start < len(lead_ids):
            size = batch_size(runtime)
            if yield_to_timers and time.monotonic() - checked >= TIMER_CHECK_S:
                if wait_for_timers(runtime, MOST_YIELD_S) >= MOST_YIELD_S:
                    size = min(size, BUSY_BATCH)  # timers still busy: a short transaction, then ask again
                checked = time.monotonic()
            batch = lead_ids[start : start + size]
            apply_leads(runtime, batch)  # applied, or set aside, or left to the reconciler: done here
            done += len(batch)
            start += size


def pump(runtime: Runtime, stop: threading.Event, wait_s: float = 1.0) -> None:
    """Run until ``stop`` is set: apply new events as soon as the web reports them."""
    while not stop.is_set():
        try:
            drain(runtime, wait_s, yield_to_timers=True)
        except RedisError as exc:
            log.warning("pump waits for Redis", extra={"error": type(exc).__name__})
            stop.wait(1.0)
        except Exception:  # the pump must outlive anything; what it missed, the reconciler applies
            log.exception("pump pass failed")
            stop.wait(1.0)
