"""The one place jobs are made: their ids, their defaults (timeouts, TTLs, retries), and enqueueing.

A job is a function inside the package marked with :func:`job`; it is enqueued by reference
(RQ records its dotted path and imports it in the worker), never by a string. Job ids come
from :func:`job_id` alone: the queue, the kind of work and numbers, nothing a CRM wrote.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

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

_KIND = re.compile(r"[a-z][a-z0-9_-]*")

F = TypeVar("F", bound=Callable)


def job(
    *,
    timeout: int = JOB_TIMEOUT_S,
    result_ttl: int = RESULT_TTL_S,
    failure_ttl: int = FAILURE_TTL_S,
    ttl: int = QUEUED_TTL_S,
) -> Callable[[F], F]:
    """Mark a function as a job, with its RQ options (explicit TTLs: RQ's defaults keep results
    and failures far longer than sla-guard needs)."""

    def mark(func: F) -> F:
        func.job_options = {"job_timeout": timeout, "result_ttl": result_ttl, "failure_ttl": failure_ttl, "ttl": ttl}
        return func

    return mark


def job_id(queue_name: str, kind: str, *numbers: int) -> str:
    """The id of a job: ``<queue>-<kind>-<n>-<n>…``, from whole numbers only.

    RQ allows ``[A-Za-z0-9_-]`` in ids; text from a CRM (an event id with spaces and colons)
    never goes into one.
    """
    if not _KIND.fullmatch(kind):
        raise ValueError(f"a job kind is lower-case letters, digits, '-' and '_', not {kind!r}")
    for number in numbers:
        if not isinstance(number, int) or isinstance(number, bool):
            raise TypeError(f"job ids are made of whole numbers, not {number!r}")
    return "-".join([queue_name, kind, *(str(number) for number in numbers)])


def queue(connection: Redis, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=connection)


def enqueue(
    connection: Redis,
    func: Callable,
    *args,
    job_id: str | None = None,
    at: datetime | None = None,
    retry: Retry | None = DEFAULT_RETRY,
    queue_name: str = QUEUE_NAME,
):
    """Enqueue the job ``func`` (a :func:`job` function, never a dotted path) now, or at the aware ``at``."""
    options = getattr(func, "job_options", None)
    if options is None:
        raise TypeError(f"{func!r} is not a job: mark it with @job")
    target = queue(connection, queue_name)
    options = {**options, "job_id": job_id, "retry": retry, "description": job_id or ""}
    if at is not None:
        if at.tzinfo is None:
            raise ValueError("timers take aware datetimes only")
        return target.enqueue_at(at, func, *args, **options)
    return target.enqueue(func, *args, **options)
