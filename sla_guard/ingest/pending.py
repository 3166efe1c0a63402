"""The hand-off from the web to the workers: a Redis list of leads with new events.

Acknowledging a webhook costs one ``RPUSH`` here instead of building an RQ job; each worker
runs a pump that pops lead ids and applies their events. The list is only a doorbell: the
events are in the database before anything is pushed, and the reconciler applies any whose
doorbell was lost (Redis down, a worker killed between pop and commit).
"""

from __future__ import annotations

import logging
import threading

from redis import Redis
from redis.exceptions import RedisError

from sla_guard.ingest.processing import apply_lead
from sla_guard.runtime import Runtime

log = logging.getLogger("sla_guard.ingest.pending")

PENDING_KEY = "sla-guard:{queue}:pending-leads"
"""Redis list of lead ids whose new events wait to be applied, one list per queue."""

BATCH = 100
"""Most lead ids a pump takes at once."""


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


def drain(runtime: Runtime, wait_s: float = 0) -> int:
    """Apply the events of every lead waiting now; return how many leads were processed."""
    done = 0
    while True:
        lead_ids = take(runtime.redis, runtime.queue_name, wait_s if done == 0 else 0)
        if not lead_ids:
            return done
        for lead_id in lead_ids:
            apply_lead(runtime, lead_id)  # never raises: one lead's trouble never stops the others
            done += 1


def pump(runtime: Runtime, stop: threading.Event, wait_s: float = 1.0) -> None:
    """Run until ``stop`` is set: apply new events as soon as the web reports them."""
    while not stop.is_set():
        try:
            drain(runtime, wait_s)
        except RedisError as exc:
            log.warning("pump waits for Redis", extra={"error": type(exc).__name__})
            stop.wait(1.0)
        except Exception:  # the pump must outlive anything; what it missed, the reconciler applies
            log.exception("pump pass failed")
            stop.wait(1.0)
