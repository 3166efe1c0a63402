"""Webhook endpoints: verify, validate, store, acknowledge. Slow work happens in workers.

An event is acknowledged (202) only after it is committed to the database; whatever happens to
Redis afterwards, the reconciler applies it. A refused request stores nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
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
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters.base import Lookup
from sla_guard.ingest.group_commit import CommitTimeout, GroupCommit
from sla_guard.ingest.pending import push
from sla_guard.outbox.base import OutboxKind
from sla_guard.outbox.crm_sync import LOOKUPS
from sla_guard.security import SIGNATURE_HEADER, verify_signature
from sla_guard.store.crm import insert_lookups
from sla_guard.store.db import get_db
from sla_guard.store.repository import insert_events
from sla_guard.web.context import clock_now
from sla_guard.web.errors import error

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("sla_guard.webhooks")


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
        doorbell(current_app)(leads)
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
