"""The timer loop: fires clocks whose timer has come, a fraction of a second after.

Every worker process runs :func:`timer_loop` in a thread of its own. It sleeps until the
earliest armed timer (at most ``SLA_GUARD_TIMER_POLL_S``), claims the due clocks from the
sorted set (see :mod:`sla_guard.timers.arming`) in batches, and fires each batch itself, in one
transaction (:func:`~sla_guard.timers.escalation.fire_clocks`: reloaded from the database, a
timer may be stale, early or repeated, the database decides). It then settles the batch's
timers and hands the alerts to a few delivery threads, so the next batch is claimed while the
last one's alerts are on their way. Nothing else a worker does (RQ jobs, applying a backlog of
events) stands in front of a timer: the loop never waits for a job slot, and while it fires
the event pumps of every worker step aside (:func:`wait_for_timers`).

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
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from redis.exceptions import RedisError

from sla_guard import runtime as runtime_module
from sla_guard.exceptions import TRANSIENT
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.timers import arming as timers
from sla_guard.timers import failures
from sla_guard.timers.escalation import FireResult, after_firing, fire_clocks

log = logging.getLogger("sla_guard.timers.loop")

BATCH = 50
"""Most clocks fired in one transaction."""

UNAVAILABLE_RETRY_S = 2.0
"""When a clock that could not be fired because the database or Redis was away is tried again."""

DELIVERY_THREADS = 4
"""Threads of a worker delivering the alerts of fired clocks (a delivery mostly waits on the channel)."""

MOST_WAITING_DELIVERIES = 500
"""Fired clocks whose alerts may wait for the delivery threads; beyond, alerts become RQ jobs."""

MOST_PER_PASS = 2000
"""Most clocks one pass of the loop fires before it looks at the clock again."""

FIRING_MARK_S = 30.0
"""How long a batch being fired holds the event pumps back at most (a worker that died mid-batch)."""

AfterFiring = Callable[[int, FireResult], None]
"""What is done with each fired clock once its batch is committed (its alerts delivered …)."""


def fire_batch(runtime: Runtime, clock_ids: list[int], lease: float, then: AfterFiring | None = None) -> int:
    """Fire the claimed clocks in one transaction, settle their timers, and hand each fired
    clock to ``then`` (default: deliver its alerts here and now); return how many fired.

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
    settle = {
        clock_id: result.fire_at if result.fire_at is not None and result.fire_at <= horizon else None
        for clock_id, result in results.items()
    }
    settle.update(dict.fromkeys(unavailable, now + timedelta(seconds=UNAVAILABLE_RETRY_S)))
    try:
        settle.update(failures.failed(runtime, failed))
    except Exception:  # the failed clocks keep their lease and are tried again when it runs out
        log.exception("failures of clocks not recorded", extra={"clocks": len(failed)})
    try:
        if results:
            failures.forget(runtime, list(results))
        timers.settle(runtime.redis, runtime.queue_name, lease, settle)
    except RedisError:  # the lease runs out and the clocks are claimed again
        log.warning("timers not settled, the database decides when their lease ends", extra={"clocks": len(settle)})
    for clock_id, result in results.items():
        if result.alert_ids or result.task_ids or result.reassignments:
            if then is None:
                after_firing(runtime, clock_id, result)
            else:
                then(clock_id, result)
    return len(results)


def fire_due(runtime: Runtime, then: AfterFiring | None = None, batch: int = BATCH) -> int:
    """Claim every clock due now and fire it, batch by batch; return how many were claimed.

    While a batch is being fired it is marked in Redis, so that every worker's event pump steps
    aside (:func:`sla_guard.timers.arming.timer_work_waiting`)."""
    claimed = 0
    token = f"{os.getpid()}-{threading.get_ident()}"
    while claimed < MOST_PER_PASS:
        clock_ids, lease = timers.claim_due(runtime.redis, runtime.queue_name, runtime.now().timestamp(), batch)
        if not clock_ids:
            break
        timers.mark_firing(runtime.redis, runtime.queue_name, token, time.time() + FIRING_MARK_S)
        try:
            fire_batch(runtime, clock_ids, lease, then)
        finally:
            timers.unmark_firing(runtime.redis, runtime.queue_name, token)
        claimed += len(clock_ids)
    return claimed


@job()
def fire_due_clocks(clock_ids: list[int], lease: float) -> None:
    """RQ job: fire a batch of claimed clocks (the timer loop fires them itself; a job of this
    kind left in the queue by an earlier version still does its work)."""
    fire_batch(runtime_module.current(), clock_ids, lease)


class Deliveries:
    """The delivery threads of one timer loop: alerts of fired clocks go out here while the loop
    fires the next batch. When too many wait, their alerts become RQ jobs instead."""

    def __init__(self, runtime: Runtime, threads: int = DELIVERY_THREADS):
        self.runtime = runtime
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="sla-guard-alerts")
        self.waiting = 0
        self.lock = threading.Lock()

    def __call__(self, clock_id: int, result: FireResult) -> None:
        with self.lock:
            busy = self.waiting >= MOST_WAITING_DELIVERIES
            if not busy:
                self.waiting += 1
        if busy:
            self._run(clock_id, result, inline=False)
            return
        self.pool.submit(self._deliver, clock_id, result)

    def _deliver(self, clock_id: int, result: FireResult) -> None:
        try:
            self._run(clock_id, result, inline=True)
        finally:
            with self.lock:
                self.waiting -= 1

    def _run(self, clock_id: int, result: FireResult, inline: bool) -> None:
        try:
            after_firing(self.runtime, clock_id, result, inline=inline)
        except Exception:  # every alert is a row: the reconciler sends what this missed
            log.exception("alerts of a fired clock not handed on", extra={"clock_id": clock_id})

    def close(self) -> None:
        """Stop: deliveries under way finish, waiting ones are dropped (the reconciler sends them)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def timer_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Run until ``stop`` is set: fire due clocks as soon as their timers come."""
    poll_s = runtime.settings.timer_poll_s
    deliveries = Deliveries(runtime)
    try:
        while not stop.is_set():
            try:
                if fire_due(runtime, deliveries):
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
    finally:
        deliveries.close()
