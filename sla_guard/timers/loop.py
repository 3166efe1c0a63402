"""The timer loop: hands clocks whose timer has come to RQ, a fraction of a second after.

Every worker process runs :func:`timer_loop` in a thread. It sleeps until the earliest armed
timer (at most ``SLA_GUARD_TIMER_POLL_S``), claims the due clocks from the sorted set (see
:mod:`sla_guard.timers.arming`) in batches, and enqueues one :func:`fire_due_clocks` job per
batch on the timer queue, which workers take before any other queue. The job fires each clock
(reloading it from the database: a timer may be stale, early or repeated, the database
decides) and settles its timer. Several loops on several workers claim atomically, so each
batch goes to exactly one job; a job that dies is redone when its lease runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from redis.exceptions import RedisError

from sla_guard import runtime as runtime_module
from sla_guard.ingest.processing import TRANSIENT
from sla_guard.queueing import enqueue, job, job_id
from sla_guard.runtime import Runtime
from sla_guard.store.repository import next_fire_times
from sla_guard.timers import arming as timers
from sla_guard.timers.escalation import run_timer

log = logging.getLogger("sla_guard.timers.loop")

BATCH = 20
"""Most clocks one timer job fires: small enough that due clocks spread over the workers."""

UNAVAILABLE_RETRY_S = 2.0
"""When a clock that could not be fired because the database or Redis was away is tried again."""

FIRE_THREADS = 4
"""Clocks of one batch fired at the same time."""

MOST_PER_PASS = 2000
"""Most clocks one pass of the loop claims before it looks at the clock again."""


def dispatch_due(runtime: Runtime, batch: int = BATCH) -> int:
    """Claim every clock due now and enqueue the jobs that fire them; return how many."""
    now = runtime.now().timestamp()
    claimed = 0
    while claimed < MOST_PER_PASS:
        clock_ids, lease = timers.claim_due(runtime.redis, runtime.queue_name, now, batch)
        if not clock_ids:
            break
        enqueue(
            runtime.redis,
            fire_due_clocks,
            clock_ids,
            lease,
            job_id=job_id(runtime.queue_name, "fire", int(lease * 1000), clock_ids[0]),
            retry=None,  # the lease is the retry: unsettled clocks are claimed again
            queue_name=timers.timer_queue_name(runtime.queue_name),
        )
        claimed += len(clock_ids)
    return claimed


def fire_batch(runtime: Runtime, clock_ids: list[int], lease: float) -> int:
    """Fire the claimed clocks and settle their timers; return how many fired without error.

    The clocks fire side by side on :data:`FIRE_THREADS` threads (each in its own transaction
    under its lead's lock): a firing mostly waits on the database and the channel, so a batch
    takes little longer than its slowest clock. A clock whose firing raised keeps its lease and
    is tried again when the lease runs out.
    """

    def fire(clock_id: int) -> tuple[int, str]:
        try:
            run_timer(runtime, clock_id)
            return clock_id, "done"
        except TRANSIENT:  # the database or Redis is away: try again soon, not after the lease
            log.warning("clock not fired yet, the database or Redis is unavailable", extra={"clock_id": clock_id})
            return clock_id, "unavailable"
        except Exception:  # one clock's trouble must not hold up the others
            log.exception("clock not fired; retried when its lease ends", extra={"clock_id": clock_id})
            return clock_id, "failed"

    if len(clock_ids) == 1:
        outcomes = [fire(clock_ids[0])]
    else:
        with ThreadPoolExecutor(min(FIRE_THREADS, len(clock_ids)), thread_name_prefix="sla-guard-fire") as pool:
            outcomes = list(pool.map(fire, clock_ids))
    done = [clock_id for clock_id, outcome in outcomes if outcome == "done"]
    unavailable = [clock_id for clock_id, outcome in outcomes if outcome == "unavailable"]
    if unavailable:
        retry_at = runtime.now() + timedelta(seconds=UNAVAILABLE_RETRY_S)
        try:
            timers.settle(runtime.redis, runtime.queue_name, lease, dict.fromkeys(unavailable, retry_at))
        except RedisError:  # the lease runs out and the clocks are claimed again
            pass
    if done:
        horizon = runtime.now() + timedelta(seconds=runtime.settings.arm_horizon_s)
        with runtime.db.session() as session:
            fire_at = next_fire_times(session, done)
        timers.settle(
            runtime.redis,
            runtime.queue_name,
            lease,
            {clock_id: at if at is not None and at <= horizon else None for clock_id, at in fire_at.items()},
        )
    return len(done)


@job()
def fire_due_clocks(clock_ids: list[int], lease: float) -> None:
    """RQ job: fire a batch of clocks the timer loop claimed."""
    fired = fire_batch(runtime_module.current(), clock_ids, lease)
    log.debug("timer batch fired", extra={"clocks": len(clock_ids), "fired": fired})


def timer_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Run until ``stop`` is set: dispatch due clocks as soon as their timers come."""
    poll_s = runtime.settings.timer_poll_s
    while not stop.is_set():
        try:
            if dispatch_due(runtime):
                continue
            upcoming = timers.next_due(runtime.redis, runtime.queue_name)
            wait = poll_s if upcoming is None else min(poll_s, max(0.0, upcoming - runtime.now().timestamp()))
        except RedisError as exc:
            log.warning("timer loop waits for Redis", extra={"error": type(exc).__name__})
            wait = 1.0
        except Exception:  # the loop must outlive any one bad pass
            log.exception("timer loop pass failed")
            wait = 1.0
        if wait > 0:
            stop.wait(wait)


def wait_for_timers(runtime: Runtime, most_s: float) -> float:
    """Block while timer work is waiting anywhere (due, queued or running), up to ``most_s``;
    return the seconds waited. What calls this steps aside for timers."""
    started = time.monotonic()
    while time.monotonic() - started < most_s:
        if not timers.timer_work_waiting(runtime.redis, runtime.queue_name, time.time()):
            break
        time.sleep(0.005)
    return time.monotonic() - started
