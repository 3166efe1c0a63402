"""SLA timers in Redis: the only module that speaks RQ scheduling.

A clock's deadline lives in the database; its timer is an RQ job scheduled with ``enqueue_at``
at the clock's ``next_fire_at``, rounded *up* to the second (RQ's scheduler compares whole
seconds, so rounding up keeps a timer from starting before its deadline). The job id names the
queue, the clock and the instant, ``sla-guard-clock-42-1795420800``, so re-arming never overwrites a running job.
Only timers due within the arming horizon are kept in Redis; the reconciler arms the others as
they come near, which keeps Redis small however many clocks are open.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from .queueing import QUEUE_NAME, enqueue

FIRE_JOB = "workers.jobs.fire_clock"
"""Dotted path of the job a timer runs."""



def fire_epoch(at: datetime) -> int:
    """The whole second a timer for ``at`` is scheduled at (never before ``at``)."""
    return math.ceil(at.timestamp())


def timer_id(clock_id: int, at: datetime, queue_name: str = QUEUE_NAME) -> str:
    """Deterministic job id of the timer for ``clock_id`` firing at ``at``."""
    return f"{queue_name}-clock-{clock_id}-{fire_epoch(at)}"


def arm(connection: Redis, clock_id: int, at: datetime, queue_name: str = QUEUE_NAME) -> bool:
    """Schedule the timer unless it is already there; True when a job was written."""
    job_id = timer_id(clock_id, at, queue_name)
    if connection.exists(Job.key_for(job_id)):
        return False
    enqueue(connection, FIRE_JOB, clock_id, fire_epoch(at), job_id=job_id,
            at=datetime.fromtimestamp(fire_epoch(at), UTC), retry=None, queue_name=queue_name)
    return True


def disarm(connection: Redis, clock_id: int, at: datetime | None, queue_name: str = QUEUE_NAME) -> None:
    """Delete the clock's timer for ``at`` (``Job.delete`` also clears its registry entry).

    A timer that is running right now is left alone: it is the job calling this, and RQ
    still has to record its end.
    """
    if at is None:
        return
    try:
        job = Job.fetch(timer_id(clock_id, at, queue_name), connection=connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) != "started":
        job.delete()


def fire_now(connection: Redis, clock_id: int, at: datetime, queue_name: str = QUEUE_NAME) -> bool:
    """Put an overdue clock's timer on the queue at once (its scheduled job was lost or is late)."""
    job_id = timer_id(clock_id, at, queue_name)
    existing = Job.fetch_many([job_id], connection=connection)[0]
    if existing is not None and existing.get_status(refresh=False) in ("queued", "started"):
        return False
    if existing is not None:
        existing.delete()
    enqueue(connection, FIRE_JOB, clock_id, fire_epoch(at), job_id=job_id, retry=None, queue_name=queue_name)
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
