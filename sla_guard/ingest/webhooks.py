"""Webhook endpoints: verify, validate, store, acknowledge. Slow work happens in workers.

An event is acknowledged (202) only after it is committed to the database; whatever happens to
Redis afterwards, the reconciler applies it. A refused request stores nothing.

Group commit: the webhook requests of one web process share their inbox transactions.

Each request thread hands its events to the process's :class:`GroupCommit` and waits. One
writer thread takes everything handed over since its last commit, stores it with one
multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` in one transaction, commits, and wakes
every waiting request with its own accepted and duplicate event ids. While the writer commits,
new requests gather for the next batch, so under load one commit (one fsync) serves many
requests, and with a single request in flight nothing waits longer than its own commit. Once a
batch is committed, the writer rings the workers' doorbell for all its new leads in one Redis
round trip (``doorbell``), before it wakes the requests.

A 202 still means committed: a request is woken only after the commit of the transaction that
holds its events. When a batch fails, its requests are stored one by one, so one request's bad
data never fails another's; the requests whose own transaction fails get the error (a 503).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import DataError, SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.exceptions import RequestEntityTooLarge

from sla_guard import metrics
from sla_guard.config import of_app
from sla_guard.core.bounds import ID_MAX, check_depth, check_events, check_moment, check_text
from sla_guard.core.events import LeadEvent, parse_events
from sla_guard.endpoints import clock_now, error
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters.base import Lookup
from sla_guard.ingest.crm_sync import LOOKUPS
from sla_guard.ingest.processing import push
from sla_guard.outbox.base import OutboxKind
from sla_guard.security import SIGNATURE_HEADER, verify_signature
from sla_guard.store.crm import insert_lookups
from sla_guard.store.db import Database, get_db
from sla_guard.store.repository import event_rows, insert_events, store_event_rows

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("sla_guard.webhooks")


MOST_ROWS = 1000
"""Most inbox rows one transaction stores; more wait for the next one."""

WAIT_S = 30.0
"""Longest a request waits for its commit before it answers 503."""


class CommitTimeout(Exception):
    """The writer did not commit the request's events in time."""


@dataclass
class Handover:
    """One request's events, handed to the writer; ``done`` is set once they are committed."""

    source: str
    events: list[LeadEvent]
    received_at: datetime
    rows: list[dict] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    accepted_leads: list[str] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def of(cls, source: str, events: list[LeadEvent], received_at: datetime) -> Handover:
        handover = cls(source, events, received_at)
        handover.rows, handover.duplicates = event_rows(source, events, received_at)
        return handover


class GroupCommit:
    """One writer per process for the inbox (see the module's description)."""

    def __init__(self, database: Database, doorbell: Callable[[list[str]], None] | None = None):
        self.database = database
        self.doorbell = doorbell
        """Called once per committed batch with the leads that have new events (never raises)."""
        self._ready = threading.Condition()
        self._pending: list[Handover] = []
        self._writer: threading.Thread | None = None
        self._pid: int | None = None

    def store(self, source: str, events: list[LeadEvent], received_at: datetime) -> tuple[list[str], list[str]]:
        """Store ``events`` (committed on return): ``(accepted, duplicates)`` event ids.

        Raises the database's error, or :class:`CommitTimeout`, when they could not be stored.
        """
        ticket = Handover.of(source, events, received_at)
        if not ticket.rows:
            return [], ticket.duplicates
        with self._ready:
            self._start_writer()
            self._pending.append(ticket)
            self._ready.notify()
        if not ticket.done.wait(WAIT_S):
            raise CommitTimeout("the events were not committed in time")
        if ticket.error is not None:
            raise ticket.error
        return ticket.accepted, ticket.duplicates

    def _start_writer(self) -> None:
        if self._writer is None or self._pid != os.getpid() or not self._writer.is_alive():
            self._pid = os.getpid()  # a forked web worker starts its own writer
            self._writer = threading.Thread(target=self._run, name="sla-guard-inbox-writer", daemon=True)
            self._writer.start()

    def _take(self) -> list[Handover]:
        with self._ready:
            while not self._pending:
                self._ready.wait()
            batch, rows = [], 0
            while self._pending and (not batch or rows + len(self._pending[0].rows) <= MOST_ROWS):
                ticket = self._pending.pop(0)
                batch.append(ticket)
                rows += len(ticket.rows)
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            try:
                self.commit(batch)
            except BaseException as exc:  # the writer must outlive anything; nobody is left waiting
                for ticket in batch:
                    if not ticket.done.is_set():
                        ticket.error = exc
                        ticket.done.set()

    def commit(self, batch: list[Handover]) -> None:
        """Store the handovers' events in one transaction and wake their requests; when that
        fails, store each handover in a transaction of its own."""
        try:
            self._store(batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            log.warning("inbox batch not stored; storing its requests one by one", exc_info=True)
            for ticket in batch:
                self.commit([ticket])
            return
        if self.doorbell is not None:
            leads = [ticket.accepted_leads for ticket in batch]
            self.doorbell(list(dict.fromkeys(lead_id for lead_ids in leads for lead_id in lead_ids)))
        for ticket in batch:
            ticket.done.set()

    def _store(self, batch: list[Handover]) -> None:
        rows, owner = [], {}
        for ticket in batch:  # the same event in two requests of one batch: the first one stores it
            for row in ticket.rows:
                key = (row["source"], row["event_id"])
                if key not in owner:
                    owner[key] = ticket
                    rows.append(row)
        with self.database.engine.begin() as connection:
            stored = store_event_rows(connection, rows)
        for ticket in batch:
            ticket.accepted, ticket.accepted_leads, extra = [], [], []
            for row in ticket.rows:
                key = (row["source"], row["event_id"])
                if key in stored and owner.get(key) is ticket:
                    ticket.accepted.append(row["event_id"])
                    ticket.accepted_leads.append(row["lead_id"])
                else:
                    extra.append(row["event_id"])
            ticket.duplicates = ticket.duplicates + extra


_INBOX_LOCK = threading.Lock()


def inbox(app) -> GroupCommit:
    """The web process's inbox writer (one per app and process); it rings the workers' doorbell
    once per committed batch."""
    committer = app.extensions.get("sla_guard.inbox")
    if committer is None:
        with _INBOX_LOCK:
            committer = app.extensions.get("sla_guard.inbox")
            if committer is None:
                committer = app.extensions["sla_guard.inbox"] = GroupCommit(get_db(app), doorbell(app))
    return committer


def doorbell(app) -> Callable[[list[str]], None]:
    """Tell the workers these leads have new events (Redis being down only defers them: the
    reconciler applies whatever is stored and not yet applied)."""
    redis, queue_name = app.extensions["sla_guard.redis"], of_app(app).queue

    def ring(lead_ids: list[str]) -> None:
        try:
            push(redis, queue_name, lead_ids)
        except RedisError as exc:
            log.warning(
                "events stored, processing deferred to the reconciler",
                extra={"error": type(exc).__name__, "lead_ids": lead_ids},
            )

    return ring


def ingest(
    source: str,
    events: list[LeadEvent],
    started: float,
    *,
    ignored: Sequence[str] = (),
    lookups: Sequence[Lookup] = (),
    also_store: Callable[[Session, list[LeadEvent], datetime], list[tuple[OutboxKind, int]]] | None = None,
):
    """Store ``events`` and answer 202 with what was accepted and what was a duplicate.

    CRM endpoints may also pass the kinds they acknowledged without an event (``ignored``,
    counted and listed in the answer), the REST look-ups a notification needs (``lookups``,
    stored in the same transaction as the events, each once per key, then queued), and
    ``also_store``, called in that transaction with the newly accepted events to record the
    outbox items they call for (queued once committed).
    """
    now = clock_now()
    try:
        check_events(events, now)
        for index, lookup in enumerate(lookups):
            check_text(lookup.id, f"lookups[{index}].id", ID_MAX)
            check_text(lookup.event, f"lookups[{index}].event", ID_MAX)
            check_moment(lookup.ts, f"lookups[{index}].ts", now)
    except InvalidEvent as exc:
        return reject(source, "invalid", 400, exc.message, exc.field)
    try:
        own_transaction = bool(lookups) or also_store is not None
        if own_transaction:  # with their look-ups and outbox items: a transaction of their own
            with get_db(current_app).session() as session:
                accepted, duplicates = insert_events(session, source, events, now)
                new_lookups, repeated = insert_lookups(session, source, lookups, now) if lookups else ([], [])
                fresh = [event for event in events if event.event_id in set(accepted)]
                items = [(LOOKUPS, lookup_id) for lookup_id, _key in new_lookups]
                items += also_store(session, fresh, now) if also_store is not None and fresh else []
        else:  # committed together with the other requests of this web process (group commit)
            accepted, duplicates = inbox(current_app).store(source, events, now)
            new_lookups, repeated, items = [], [], []
    except DataError:
        return reject(source, "invalid", 400, "an event holds a value the database cannot store", "body")
    except (SQLAlchemyError, CommitTimeout) as exc:
        metrics.EVENTS_REJECTED.labels(source, "database").inc()
        log.error("events not stored: database unavailable", extra={"source": source, "error": type(exc).__name__})
        return error(503, "the database cannot store events right now; retry later")
    metrics.EVENTS_ACCEPTED.labels(source).inc(len(accepted) + len(new_lookups))
    if duplicates or repeated:
        metrics.EVENTS_DUPLICATE.labels(source).inc(len(duplicates) + len(repeated))
    for kind in ignored:
        metrics.EVENTS_IGNORED.labels(source, kind).inc()
    accepted_set = set(accepted)
    leads = list(dict.fromkeys(event.lead.id for event in events if event.event_id in accepted_set))
    if own_transaction:  # the group commit's writer rings the doorbell for its batches itself
        redis, queue_name = current_app.extensions["sla_guard.redis"], of_app(current_app).queue
        inbox(current_app).doorbell(leads)
        try:
            for kind, item_id in items:
                kind.schedule(redis, queue_name, item_id, 1)
        except RedisError as exc:
            log.warning("outbox items stored, queued later by the reconciler", extra={"error": type(exc).__name__})
    if accepted:
        log.info(
            "events accepted",
            extra={
                "source": source,
                "event_ids": accepted,
                "lead_ids": leads,
                **({"event_id": accepted[0], "lead_id": leads[0]} if len(leads) == 1 else {}),
            },
        )
    for lookup_id, key in new_lookups:
        log.info(
            "notification accepted, its record is to be read",
            extra={"source": source, "lookup_id": lookup_id, "key": key},
        )
    metrics.INGEST_SECONDS.labels(source).observe(time.perf_counter() - started)
    body = {"accepted": accepted + [key for _id, key in new_lookups], "duplicates": duplicates + repeated}
    if ignored:
        body["ignored"] = list(ignored)
    return jsonify(body), 202


def read_body() -> bytes | None:
    """The request body, or None when it is over ``SLA_GUARD_MAX_BODY_BYTES``.

    Checked before any authentication, also for chunked bodies (no ``Content-Length``), which
    the server cuts at the limit: one that reaches it is refused rather than read short.
    """
    limit = of_app(current_app).max_body_bytes
    if (request.content_length or 0) > limit:
        return None
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return None
    if request.content_length is None and len(body) >= limit:
        return None
    return body


def reject(source: str, reason: str, status: int, message: str, field: str | None = None):
    """Count and log a refused webhook; the error answer naming ``field``."""
    metrics.EVENTS_REJECTED.labels(source, reason).inc()
    log.info("webhook refused", extra={"source": source, "reason": reason, "status": status, "field": field})
    return error(status, message, field=field)


@bp.post("/generic")
def generic():
    started = time.perf_counter()
    secret = of_app(current_app).webhook_secret
    if not secret:
        return error(404, "the generic webhook is not enabled: set SLA_GUARD_WEBHOOK_SECRET")
    if request.mimetype != "application/json":
        return reject("generic", "content_type", 415, "Content-Type must be application/json", "Content-Type")
    body = read_body()
    if body is None:
        return reject("generic", "too_large", 413, "request body is over the size limit", "body")
    try:
        verify_signature(
            request.headers.get(SIGNATURE_HEADER),
            body,
            secret,
            clock_now().timestamp(),
            of_app(current_app).signature_max_age_s,
        )
    except Unauthorized as exc:
        return reject("generic", "signature", 401, exc.reason, SIGNATURE_HEADER)
    try:
        check_depth(body)
        payload = json.loads(body)
    except InvalidEvent as exc:
        return reject("generic", "malformed", 400, exc.message, exc.field)
    except (ValueError, UnicodeDecodeError) as exc:
        return reject("generic", "malformed", 400, f"body is not valid JSON: {exc}", "body")
    try:
        events = parse_events(payload, clock_now())
    except InvalidEvent as exc:
        return reject("generic", "invalid", 400, exc.message, exc.field)
    return ingest("generic", events, started)
