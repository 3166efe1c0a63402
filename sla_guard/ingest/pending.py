"""The hand-off from the web to the workers: a Redis list of leads with new events.

Acknowledging a webhook costs one ``RPUSH`` here instead of building an RQ job; each worker
runs a pump that pops lead ids and applies their events. The list is only a doorbell: the
events are in the database before anything is pushed, and the reconciler applies any whose
doorbell was lost (Redis down, a worker killed between pop and commit).
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import RedisError

from sla_guard.ingest.processing import apply_leads, batch_size
from sla_guard.runtime import Runtime
from sla_guard.timers.loop import wait_for_timers

log = logging.getLogger("sla_guard.ingest.pending")

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
            done += apply_batch(runtime, lead_ids[start : start + size])
            start += size


def apply_batch(runtime: Runtime, lead_ids: list[str]) -> int:
    """Apply the leads (see :func:`apply_leads`); return how many were processed, applied or
    set aside."""
    apply_leads(runtime, lead_ids)
    return len(lead_ids)


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
