"""The workers' side of the inbox: the doorbell, the pump, applying a lead's events, and the
timers they arm.

Acknowledging a webhook costs the web one ``RPUSH`` on the doorbell (:func:`push`), a Redis
list of lead ids with new events, instead of building an RQ job. Each worker runs a
:func:`pump` that pops lead ids and applies their events: replay them, store the state and
clocks, (re)arm the timers. The list is only a doorbell: the events are in the database before
anything is pushed, and the reconciler applies any whose doorbell was lost (Redis down, a
worker killed between pop and commit).

A clock's deadline lives in the database (``next_fire_at``). Its timer is one member of the
sorted set ``sla-guard:<queue>:timers``, the only layout of it anywhere: the clock id, scored
with ``next_fire_at`` as epoch seconds (exact: nothing is rounded). The timer loop
(:mod:`sla_guard.timers.firing`) *claims* the members whose score has come: an atomic script
moves them to a lease score a little in the future. Once fired it *settles* each: the member
gets the clock's new ``next_fire_at``, or leaves the set, but only if its score is still the
lease (compare-and-set), so a timer re-armed by newer events meanwhile is never overwritten. A
loop that dies leaves its lease behind; when it runs out the clocks are claimed again. Only
clocks due within the arming horizon are kept in Redis (about 100 bytes each); the reconciler
arms the others as they come near and re-arms anything Redis lost. Whatever else a worker does
steps aside while timer work waits (:func:`wait_for_timers`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError

from sla_guard.core.bounds import clean_text
from sla_guard.core.engine import ClockPlan, replay, task_touches, without_own_task_echoes
from sla_guard.core.stays import stage_stays
from sla_guard.outbox.follow_up_tasks import queue_closes
from sla_guard.runtime import TRANSIENT, Runtime
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
    idempotent. Each kind of row is read in one statement for the batch and written in one flush;
    leads are locked in sorted order, so two batches never wait on each other in a circle. Raises
    if any lead fails: nothing of the batch is stored then."""
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

    A failure of the database or Redis is left to the reconciler. Any other failure belongs to
    the lead: it is quarantined with the reason, and applied again only when retried (``sla-guard
    quarantine retry``, ``POST /api/quarantine/<lead id>/retry``) or when a new event arrives.
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


def apply_leads(runtime: Runtime, lead_ids: list[str]) -> list[str]:
    """Apply the leads in one transaction; if that fails, one by one, so that one lead's trouble
    never holds up the others (a lead that still fails is quarantined, or retried by the
    reconciler when the database or Redis failed). Returns the leads applied; never raises."""
    wanted = list(dict.fromkeys(lead_ids))
    try:
        process_leads(runtime, wanted)
        return wanted
    except Exception:
        log.warning("batch not applied; applying its leads one by one", exc_info=True)
    return [lead_id for lead_id in wanted if apply_lead(runtime, lead_id)]


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

    With ``yield_to_timers`` the pump pauses before a lead while timer work is waiting (timers
    due or being fired): alerts go first, the backlog after."""
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


# --- the timer set ----------------------------------------------------------------------------

TIMERS_KEY = "sla-guard:{queue}:timers"
"""Sorted set of armed clocks: member = clock id, score = epoch seconds it fires at."""

LEASE_S = 120.0
"""How long a claimed clock is left to its loop before it is claimed again (a worker that died)."""

FIRING_KEY = "sla-guard:{queue}:timers-firing"
"""Sorted set of batches being fired now: member = the firing loop, score = when the mark lapses."""

SET_ASIDE_AT = datetime(9000, 1, 1, tzinfo=UTC)
"""The instant a clock set aside (its firing kept failing) is armed at: never, until released.
Its timer stays in the set, so the reconciler sees it armed and leaves it alone."""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""

_SETTLE = """
local settled = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    if ARGV[i + 1] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
    settled = settled + 1
  end
end
return settled
"""


def timers_key(queue_name: str) -> str:
    return TIMERS_KEY.format(queue=queue_name)


def score_of(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("timers take aware datetimes only")
    return at.timestamp()


def arm(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Arm (or move) the timers of these clocks to fire at the given instants."""
    if fire_at:
        connection.zadd(timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()})


def arm_missing(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Arm the timers of clocks not armed at all; a timer already there (or leased) is kept."""
    if fire_at:
        connection.zadd(
            timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()}, nx=True
        )


def bring_forward(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Move timers that are armed later than these instants to them (never later)."""
    if fire_at:
        connection.zadd(
            timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()}, lt=True
        )


def disarm(connection: Redis, queue_name: str, clock_ids: Iterable[int]) -> None:
    """Remove the timers of these clocks (a clock that stopped, or whose next step is far off)."""
    members = [str(clock_id) for clock_id in clock_ids]
    if members:
        connection.zrem(timers_key(queue_name), *members)


def claim_due(
    connection: Redis, queue_name: str, now: float, limit: int, lease_s: float = LEASE_S
) -> tuple[list[int], float]:
    """Atomically take up to ``limit`` clocks due at ``now`` (epoch seconds) under a new lease.

    Returns the clock ids and the lease score that :func:`settle` needs.
    """
    lease = round(now + lease_s, 3)
    members = connection.eval(_CLAIM, 1, timers_key(queue_name), repr(now), repr(lease), int(limit))
    return [int(member) for member in members], lease


def settle(connection: Redis, queue_name: str, lease: float, fire_at: Mapping[int, datetime | None]) -> int:
    """After the timer loop fired its clocks: re-arm each at its new instant, or drop it when None, unless
    its timer was moved meanwhile (its score is no longer ``lease``). Returns how many settled."""
    if not fire_at:
        return 0
    args: list[str] = [repr(lease)]
    for clock_id, at in fire_at.items():
        args += [str(clock_id), "" if at is None else repr(score_of(at))]
    return int(connection.eval(_SETTLE, 1, timers_key(queue_name), *args))


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
        disarm(runtime.redis, runtime.queue_name, [c.clock_id for c in changes if c.clock_id not in near])
        arm(runtime.redis, runtime.queue_name, near)
    except RedisError as exc:
        log.warning("timers not armed, the reconciler will retry", extra={"error": type(exc).__name__})


def armed_at(connection: Redis, queue_name: str, clock_ids: list[int]) -> dict[int, float]:
    """The scores of those of ``clock_ids`` that are armed (or leased)."""
    if not clock_ids:
        return {}
    scores = connection.zmscore(timers_key(queue_name), [str(clock_id) for clock_id in clock_ids])
    return {clock_id: score for clock_id, score in zip(clock_ids, scores, strict=True) if score is not None}


def next_due(connection: Redis, queue_name: str) -> float | None:
    """Epoch seconds of the earliest armed timer, or None when none is armed."""
    first = connection.zrange(timers_key(queue_name), 0, 0, withscores=True)
    return first[0][1] if first else None


def count_armed(connection: Redis, queue_name: str) -> int:
    return int(connection.zcard(timers_key(queue_name)))


def set_aside_count(connection: Redis, queue_name: str) -> int:
    """How many clocks are set aside because their firing kept failing."""
    return int(connection.zcount(timers_key(queue_name), score_of(SET_ASIDE_AT), "+inf"))


def mark_firing(connection: Redis, queue_name: str, firer: str, until: float) -> None:
    """Say that ``firer`` is firing a batch of clocks (until it unmarks, or ``until`` at most)."""
    connection.zadd(FIRING_KEY.format(queue=queue_name), {firer: until})


def unmark_firing(connection: Redis, queue_name: str, firer: str) -> None:
    connection.zrem(FIRING_KEY.format(queue=queue_name), firer)


def timer_work_waiting(connection: Redis, queue_name: str, now: float) -> bool:
    """True while timers are due or being fired: the moment for everything else (applying a
    backlog of events) to step aside."""
    pipe = connection.pipeline(transaction=False)
    pipe.zcount(timers_key(queue_name), "-inf", now)
    pipe.zcount(FIRING_KEY.format(queue=queue_name), now, "+inf")
    return any(pipe.execute())


def wait_for_timers(runtime: Runtime, most_s: float) -> float:
    """Block while timer work is waiting anywhere (timers due or being fired), up to
    ``most_s``; return the seconds waited. What calls this steps aside for timers."""
    started = time.monotonic()
    while time.monotonic() - started < most_s:
        if not timer_work_waiting(runtime.redis, runtime.queue_name, time.time()):
            break
        time.sleep(0.005)
    return time.monotonic() - started
