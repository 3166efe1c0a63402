"""The one place jobs are enqueued, with sla-guard's defaults (timeouts, TTLs, retries)."""

from __future__ import annotations

from datetime import datetime

from redis import Redis
from rq import Queue, Retry

QUEUE_NAME = "sla-guard"
"""The RQ queue every sla-guard job goes through."""

JOB_TIMEOUT_S = 60
"""Longest a single job may run before RQ stops it."""

RESULT_TTL_S = 0
"""Results are not kept: every outcome that matters is written to the database."""

FAILURE_TTL_S = 7 * 24 * 3600
"""How long a failed job stays inspectable in RQ's failed registry (RQ's default is a year)."""

QUEUED_TTL_S = 24 * 3600
"""A queued job not started within this time is dropped; the reconciler redoes its work."""

DEFAULT_RETRY = Retry(max=3, interval=[1, 5, 30])
"""Retries of a job that raised: the database or a channel may be briefly unavailable."""


def queue(connection: Redis, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=connection)


def job_options(job_id: str | None, retry: Retry | None) -> dict:
    return {
        "job_id": job_id,
        "job_timeout": JOB_TIMEOUT_S,
        "result_ttl": RESULT_TTL_S,
        "failure_ttl": FAILURE_TTL_S,
        "ttl": QUEUED_TTL_S,
        "retry": retry,
        "description": job_id or "",
    }


def enqueue(
    connection: Redis,
    func: str,
    *args,
    job_id: str | None = None,
    at: datetime | None = None,
    retry: Retry | None = DEFAULT_RETRY,
    queue_name: str = QUEUE_NAME,
):
    """Enqueue ``func`` (a dotted path) now, or at the aware ``at``, with the project's defaults."""
    target = queue(connection, queue_name)
    options = job_options(job_id, retry)
    if at is not None:
        if at.tzinfo is None:
            raise ValueError("timers take aware datetimes only")
        return target.enqueue_at(at, func, *args, **options)
    return target.enqueue(func, *args, **options)
