"""The outbox: one claim / attempt / backoff / give-up for everything sla-guard sends.

Every outgoing work item is a row in the database before anything is sent, so nothing that must
be retried lives only in Redis. Modelled on rq's ``registry.py``: :class:`OutboxKind` holds the
shared behaviour and each kind is a small subclass naming its table, its job, its
:class:`Retry` policy and how one attempt is made (:meth:`OutboxKind.attempt`):

============  ======================================  ================================
kind          table                                   module
============  ======================================  ================================
alert         ``alerts``                              :mod:`sla_guard.outbox.delivery`
ops           ``outbox_items``                        :mod:`sla_guard.outbox.delivery`
digest        ``digests``                             :mod:`sla_guard.outbox.digests`
task, close   ``follow_up_tasks``                     :mod:`sla_guard.outbox.follow_up_tasks`
lookup        ``crm_lookups``                         :mod:`sla_guard.ingest.crm_sync`
loss-reason   ``outbox_items``                        :mod:`sla_guard.ingest.crm_sync`
reassign      ``outbox_items``                        :mod:`sla_guard.outbox.crm_reassign`
============  ======================================  ================================

One attempt: :meth:`~OutboxKind.claim` the row with a conditional UPDATE (so two workers never
work on one item, and a claim expires, so a worker killed mid-send strands nothing), make the
attempt, then record success, or a :class:`~sla_guard.exceptions.DeliveryError`: a retryable or
rate-limited one waits the policy's interval (or the service's wait, if longer) and is scheduled
again; a permanent one, or one past the policy's ``max`` attempts, is given up and raises an
ops alert (through the kind's :attr:`~OutboxKind.ops`; a failing ops alert raises no other). Any
other exception counts as retryable. What a firing writes (alerts, tasks, pushes to a CRM) gets
its first attempt at once from the worker that wrote it (:func:`attempt_now`, or the threads of
:class:`FirstAttempts`); other items are queued as jobs when written. The reconciler runs
:meth:`~OutboxKind.requeue_due`, the one "due for retry" query, for every kind; job ids come
from :func:`sla_guard.queueing.job_id`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from redis.exceptions import RedisError
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import and_, or_
from sqlalchemy.orm import Session

from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.http import redact
from sla_guard.outbox.ops_alerts import work_failed
from sla_guard.queueing import enqueue, job_id
from sla_guard.runtime import Runtime
from sla_guard.store import outbox as store
from sla_guard.store.models import OutboxItemRow

log = logging.getLogger("sla_guard.outbox")

ERROR_LIMIT = 2000
"""Longest error text kept on a row."""

_WAITING = ("scheduled", "queued", "started", "deferred")


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a kind is tried: ``max`` attempts in all, waiting
    ``interval[n - 1]`` after the n-th failed one (the last interval repeats)."""

    max: int
    interval: tuple[float, ...]

    def wait(self, failed_attempts: int) -> float:
        return float(self.interval[min(max(failed_attempts, 1), len(self.interval)) - 1])


def doubling(first: float, cap: float) -> tuple[float, ...]:
    """``first``, twice that, … up to ``cap`` (the last interval): ``doubling(2, 600)`` is 2, 4, … 512, 600."""
    waits = [float(first)]
    while waits[-1] * 2 < cap:
        waits.append(waits[-1] * 2)
    return (*waits, float(cap))


class OutboxKind:
    """The shared behaviour of one kind of outgoing work item (see the module's docs)."""

    name: ClassVar[str]
    """The kind's name in job ids, logs and ops alerts (``[a-z-]``)."""
    what: ClassVar[str]
    """What one item is, for people (an ops alert says "sla-guard gave up on <what> #id")."""
    model: ClassVar[Any]
    """The table of the kind's rows."""
    open_statuses: ClassVar[tuple[str, ...]] = ("pending", "sending")
    """Statuses of rows still to be worked on."""
    claimed_status: ClassVar[str | None] = "sending"
    """The status a claim sets (``None``: the status stays)."""
    retry_status: ClassVar[str] = "pending"
    failed_status: ClassVar[str] = "failed"
    claim_s: ClassVar[float] = 60.0
    """How long a claimed row is left to the worker on it before another may take it over."""
    grace: ClassVar[timedelta] = timedelta(seconds=5)
    """Rows younger than this are left to their first attempt, made or queued when they were written."""
    created_column: ClassVar[str] = "created_at"
    outcome_field: ClassVar[str] = "status"
    """The log field that carries each attempt's outcome."""
    not_claimed: ClassVar[str] = "not_claimed"
    retrying: ClassVar[str] = "pending"
    gave_up: ClassVar[str] = "failed"

    def __init__(self, job_function: Callable, *, ops: OutboxKind | None):
        self.job = job_function
        self.ops = ops
        """The kind that tells the ops channels when an item of this kind is given up (the ops
        alerts of :mod:`sla_guard.outbox.delivery`); ``None``: nobody (the ops alerts' own kind)."""

    # --- policy and hooks (overridden per kind) --------------------------------------------

    def retry(self, runtime: Runtime) -> Retry:
        return Retry(runtime.settings.alert_max_attempts, doubling(2, 600))

    def attempt(self, runtime: Runtime, row: Any) -> str:
        """Make one attempt: do the work, record the success, return the status word."""
        raise NotImplementedError

    def context(self, row: Any) -> dict:
        """Log fields of one attempt."""
        return {f"{self.name.replace('-', '_')}_id": row.id, "attempt": row.attempts}

    def secrets(self, runtime: Runtime, row: Any) -> Iterable[str]:
        """Values to blank out of this item's errors besides those the HTTP layer knows."""
        return ()

    def retry_values(self, error: str, at: datetime) -> dict:
        return {"status": self.retry_status, "last_error": error, "claimed_until": at}

    def failed_values(self, error: str, now: datetime) -> dict:
        return {"status": self.failed_status, "last_error": error, "claimed_until": None}

    def on_retry(self, runtime: Runtime, row: Any, error: str, wait: float, context: dict) -> None:
        log.warning(f"{self.what} failed, will retry", extra={**context, "error": error, "retry_in_s": wait})

    def on_give_up(self, runtime: Runtime, row: Any, error: str, context: dict) -> None:
        """Log, and tell the ops channels."""
        log.error(f"{self.what} given up", extra={**context, "error": error})
        self.raise_ops_alert(runtime, row, error)

    def raise_ops_alert(self, runtime: Runtime, row: Any, error: str) -> None:
        """Tell the ops channels that ``row`` was given up (through :attr:`ops`, when set)."""
        if self.ops is not None:
            self.ops.raise_for(runtime, self, row, error)

    def ops_alert(self, row: Any, error: str, locale: str) -> dict | None:
        """What the ops channels hear when ``row`` is given up (:mod:`sla_guard.outbox.ops_alerts`);
        ``None``: nothing."""
        return work_failed(self.what, self.name, row, error, locale)

    # --- the table -------------------------------------------------------------------------

    def is_open(self):
        return self.model.status.in_(self.open_statuses)

    def is_free(self, now: datetime):
        return or_(self.model.claimed_until.is_(None), self.model.claimed_until <= now)

    def due_clause(self, now: datetime):
        """Rows whose (next) attempt is due: open, unclaimed or past their wait, and tried before
        or older than :attr:`grace`."""
        created = getattr(self.model, self.created_column)
        return and_(self.is_open(), self.is_free(now), or_(self.model.attempts > 0, created <= now - self.grace))

    def due(self, session: Session, now: datetime, limit: int = 500, *where) -> list[tuple[int, int]]:
        """The one "due for retry" query: ``(id, attempts so far)`` of the rows to try now
        (narrowed by the conditions ``where``)."""
        return store.due_items(session, self.model, (self.due_clause(now), *where), limit)

    def claim(self, runtime: Runtime, item_id: int) -> Any | None:
        """Count one more attempt of an open, unclaimed row and hold it; the row, or ``None``."""
        now = runtime.now()
        values = {"attempts": self.model.attempts + 1, "claimed_until": now + timedelta(seconds=self.claim_s)}
        if self.claimed_status is not None:
            values["status"] = self.claimed_status
        with runtime.db.session() as session:
            return store.claim_item(session, self.model, item_id, (self.is_open(), self.is_free(now)), values)

    def update(self, runtime: Runtime, item_id: int, **values) -> None:
        with runtime.db.session() as session:
            store.set_item(session, self.model, item_id, **values)

    # --- Redis -----------------------------------------------------------------------------

    def job_id(self, queue_name: str, item_id: int, attempt: int) -> str:
        """The id of the job making attempt ``attempt`` (1, 2, …) of an item."""
        return job_id(queue_name, self.name, item_id, attempt)

    def schedule(
        self,
        redis,
        queue_name: str,
        item_id: int,
        attempt: int,
        at: datetime | None = None,
        *,
        overdue_before: datetime | None = None,
    ) -> bool:
        """Queue attempt ``attempt`` (at ``at``, or now) unless its job is already waiting or
        running; a finished or failed job of that attempt is replaced, and so is a scheduled one
        due before ``overdue_before`` (the scheduler is not working). True when a job was written."""
        wanted = self.job_id(queue_name, item_id, attempt)
        existing = Job.fetch_many([wanted], connection=redis)[0]
        if existing is not None:
            status = existing.get_status(refresh=False)
            if status == "scheduled" and overdue_before is not None:
                score = redis.zscore(ScheduledJobRegistry(queue_name, connection=redis).key, wanted)
                if score is None or score > overdue_before.timestamp():
                    return False
            elif status in _WAITING:
                return False
            existing.delete()  # a separate step from the enqueue below, never in one pipeline
        enqueue(redis, self.job, item_id, job_id=wanted, at=at, retry=None, queue_name=queue_name)
        return True

    def requeue_due(self, runtime: Runtime, overdue_before: datetime, limit: int = 500) -> int:
        """The reconciler's pass: queue every due item whose job is not waiting; the number queued.
        Each item is handled on its own: one item's trouble never stops the others."""
        with runtime.db.session() as session:
            due = self.due(session, runtime.now(), limit)
        queued = 0
        for item_id, attempts in due:
            try:
                queued += self.schedule(
                    runtime.redis, runtime.queue_name, item_id, attempts + 1, overdue_before=overdue_before
                )
            except RedisError:
                raise  # Redis is down: the whole pass waits for it
            except Exception:
                log.exception(f"{self.what} not queued", extra={"kind": self.name, "item_id": item_id})
        return queued

    # --- one attempt -----------------------------------------------------------------------

    def run(self, runtime: Runtime, item_id: int) -> str:
        """Claim the item and make one attempt; return its status word afterwards."""
        row = self.claim(runtime, item_id)
        if row is None:
            return self.not_claimed
        context = self.context(row)
        try:
            try:
                return self.attempt(runtime, row)
            except DeliveryError:
                raise
            except Exception as exc:  # an unforeseen failure: retried, never fatal to the job
                log.exception(f"{self.what} raised unexpectedly", extra=context)
                raise DeliveryError(f"unexpected {type(exc).__name__}", transient=True) from None
        except DeliveryError as exc:
            return self.failed(runtime, row, exc, context)

    def failed(self, runtime: Runtime, row: Any, exc: DeliveryError, context: dict) -> str:
        """Record a failed attempt: wait and retry, or give up."""
        error = redact(str(exc), self.secrets(runtime, row))[:ERROR_LIMIT]
        policy = self.retry(runtime)
        now = runtime.now()
        if exc.transient and row.attempts < policy.max:
            wait = max(policy.wait(row.attempts), exc.retry_after_s or 0.0)
            at = now + timedelta(seconds=wait)
            self.update(runtime, row.id, **self.retry_values(error, at))
            self.on_retry(runtime, row, error, wait, {**context, self.outcome_field: self.retrying})
            try:
                self.schedule(runtime.redis, runtime.queue_name, row.id, row.attempts + 1, at)
            except RedisError:
                pass  # the row says when: the reconciler queues it when the wait is over
            return self.retrying
        row.last_error = error
        self.update(runtime, row.id, **self.failed_values(error, now))
        self.on_give_up(runtime, row, error, {**context, self.outcome_field: self.gave_up})
        return self.gave_up


# --- kinds kept in the generic table ---------------------------------------------------------


class ItemKind(OutboxKind):
    """A kind whose items live in ``outbox_items``: a key (once per kind) and JSON arguments."""

    open_statuses = ("pending",)
    claimed_status = None

    def is_open(self):
        return and_(self.model.kind == self.name, self.model.status.in_(self.open_statuses))

    model = OutboxItemRow

    def add(self, session: Session, key: str, args: dict, now: datetime, *, not_before: datetime | None = None):
        """Record one item, once per ``key``; its id, or ``None`` when the key was recorded before."""
        return store.add_item(session, self.name, key, json.dumps(args, ensure_ascii=False), now, not_before)

    def ensure(self, session: Session, key: str, args: dict, now: datetime) -> int:
        """The id of the item of ``key``, recorded now if it was not."""
        item_id = self.add(session, key, args, now)
        return store.item_id(session, self.name, key) if item_id is None else item_id

    def outcome_of(self, runtime: Runtime, item_id: int) -> str | None:
        with runtime.db.session() as session:
            row = store.item(session, item_id)
            return row.outcome or row.status if row else None

    def done(self, runtime: Runtime, item_id: int, outcome: str) -> None:
        self.update(runtime, item_id, status="done", outcome=outcome, done_at=runtime.now(), claimed_until=None)

    def context(self, row: Any) -> dict:
        return {"item_id": row.id, "kind": self.name, "attempt": row.attempts, **json.loads(row.args)}


# --- first attempts --------------------------------------------------------------------------

INLINE_S = 20.0
"""New items are tried at once for this long after they were handed on; later ones become jobs
of their own, so slow channels or CRMs never hold up what comes after them."""

Item = tuple[OutboxKind, int]
"""One outgoing work item: its kind and its row's id."""


def attempt_now(runtime: Runtime, items: Iterable[Item], inline: bool = True, since: float | None = None) -> None:
    """Make the first attempt of new items here, until :data:`INLINE_S` after ``since`` (a
    ``time.monotonic()``; now if not given; none when ``inline`` is False), and queue the rest as
    jobs. Never raises for one item's trouble: every item is a row, and the reconciler queues what
    this missed."""
    started = time.monotonic() if since is None else since
    for kind, item_id in items:
        try:
            if inline and time.monotonic() - started <= INLINE_S:
                kind.run(runtime, item_id)
            else:
                kind.schedule(runtime.redis, runtime.queue_name, item_id, 1)
        except Exception:  # one item's trouble must not hold up the others
            log.exception(f"{kind.what} not attempted", extra={"kind": kind.name, "item_id": item_id})


class FirstAttempts:
    """A few threads making the first attempts of new items, so that the process that wrote them
    (the timer loop) goes on at once. When too many wait, items are queued as jobs instead."""

    def __init__(self, runtime: Runtime, threads: int = 4, most_waiting: int = 500):
        self.runtime = runtime
        self.most_waiting = most_waiting
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="sla-guard-outbox")
        self.waiting = 0
        self.lock = threading.Lock()

    def __call__(self, items: list[Item]) -> None:
        with self.lock:
            busy = self.waiting >= self.most_waiting
            if not busy:
                self.waiting += 1
        if busy:
            attempt_now(self.runtime, items, inline=False)
        else:
            self.pool.submit(self._attempt, items, time.monotonic())

    def _attempt(self, items: list[Item], handed_at: float) -> None:
        try:
            attempt_now(self.runtime, items, since=handed_at)  # a long wait for a thread counts
        finally:
            with self.lock:
                self.waiting -= 1

    def close(self) -> None:
        """Stop: attempts under way finish, waiting ones are dropped (the reconciler queues them)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
