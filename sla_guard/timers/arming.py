"""SLA timers in Redis: the only module that speaks RQ scheduling.

A clock's deadline lives in the database (``next_fire_at``). Its timer is a *tick*: an RQ job
scheduled with ``enqueue_at`` for the whole second ``next_fire_at`` rounds *up* to (RQ's
scheduler compares whole seconds, so rounding up keeps a timer from starting before its
deadline). Every clock due in the same second and shard shares the tick, whose job id names
them: ``sla-guard-tick-1795420800-3`` (queue, second, shard; a clock's shard is its id modulo
``SLA_GUARD_TIMER_SHARDS``). A tick fires exactly the clocks of its second and shard, so
shards of a busy second run on several workers at once, Redis holds one small job per busy
second and shard instead of one per clock, and no tick's work overlaps another's.

Only ticks due within the arming horizon are kept in Redis; the reconciler arms the others as
they come near, re-arms ticks lost with Redis, and queues at once the ticks of clocks already
due whose job is missing or stuck with a dead scheduler.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from redis import Redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from sla_guard import queueing
from sla_guard.queueing import QUEUE_NAME, enqueue

TICK_JOB = "sla_guard.timers.ticks.fire_tick_job"
"""The job a tick runs, by its path: the ticks module fires clocks, which applies events, which
arms ticks here, so a reference from this module would close an import circle."""

DEFAULT_SHARDS = 4
"""Ticks per busy second (``SLA_GUARD_TIMER_SHARDS``): how many workers can share its clocks."""


def fire_epoch(at: datetime) -> int:
    """The whole second a timer for ``at`` is scheduled at (never before ``at``)."""
    return math.ceil(at.timestamp())


def shard_of(clock_id: int, shards: int) -> int:
    return clock_id % shards


def tick_id(epoch: int, shard: int, queue_name: str = QUEUE_NAME) -> str:
    """Deterministic job id of the tick of second ``epoch`` and ``shard``."""
    return queueing.job_id(queue_name, "tick", epoch, shard)


def tick_of(clock_id: int, at: datetime, shards: int) -> tuple[int, int]:
    """The tick ``(second, shard)`` that fires ``clock_id`` due at ``at``."""
    return fire_epoch(at), shard_of(clock_id, shards)


def arm(connection: Redis, epoch: int, shard: int, shards: int, queue_name: str = QUEUE_NAME) -> bool:
    """Schedule the tick unless it is already there; True when a job was written."""
    job_id = tick_id(epoch, shard, queue_name)
    if connection.exists(Job.key_for(job_id)):
        return False
    enqueue(
        connection,
        TICK_JOB,
        epoch,
        shard,
        shards,
        job_id=job_id,
        at=datetime.fromtimestamp(epoch, UTC),
        retry=None,
        queue_name=queue_name,
    )
    return True


def disarm(connection: Redis, epoch: int, shard: int, queue_name: str = QUEUE_NAME) -> None:
    """Delete a tick no clock needs any more (``Job.delete`` also clears its registry entry).

    A tick that is running right now is left alone: RQ still has to record its end.
    """
    job = Job.fetch_many([tick_id(epoch, shard, queue_name)], connection=connection)[0]
    if job is not None and job.get_status(refresh=False) != "started":
        job.delete()


def fire_now(connection: Redis, epoch: int, shard: int, shards: int, queue_name: str = QUEUE_NAME) -> bool:
    """Queue a tick that is already due at once (its scheduled job was lost, or is stuck)."""
    job_id = tick_id(epoch, shard, queue_name)
    existing = Job.fetch_many([job_id], connection=connection)[0]
    if existing is not None and existing.get_status(refresh=False) in ("queued", "started"):
        return False
    if existing is not None:
        existing.delete()  # a separate step from the enqueue below, never in one pipeline
    enqueue(connection, TICK_JOB, epoch, shard, shards, job_id=job_id, retry=None, queue_name=queue_name)
    return True


def armed(connection: Redis, job_ids: list[str]) -> set[str]:
    """Which of ``job_ids`` exist in Redis (scheduled, queued or running)."""
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(Job.key_for(job_id))
    return {job_id for job_id, present in zip(job_ids, pipe.execute(), strict=True) if present}


def scheduled(connection: Redis, queue_name: str = QUEUE_NAME) -> dict[str, float]:
    """Every scheduled job id of the queue with its epoch second."""
    registry_key = ScheduledJobRegistry(queue_name, connection=connection).key
    return {member.decode(): score for member, score in connection.zrange(registry_key, 0, -1, withscores=True)}
