"""Webhook endpoints: verify, validate, store, acknowledge. Slow work happens in workers.

An event is acknowledged (202) only after it is committed to the database; whatever happens to
Redis afterwards, the reconciler applies it. A refused request stores nothing.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from .. import metrics
from ..events import LeadEvent, parse_events
from ..exceptions import InvalidEvent, Unauthorized
from ..queueing import enqueue
from ..security import SIGNATURE_HEADER, verify_signature
from ..store.db import get_db
from ..store.repository import insert_events
from .errors import error

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger("sla_guard.webhooks")

PROCESS_JOB = "workers.jobs.process_lead"
"""Dotted path of the job that applies a lead's new events."""


def _now():
    return current_app.extensions["sla_guard.clock"]()


def ingest(source: str, events: list[LeadEvent], started: float):
    """Store ``events`` and answer 202 with what was accepted and what was a duplicate."""
    try:
        with get_db(current_app).session() as session:
            accepted, duplicates = insert_events(session, source, events, _now())
    except SQLAlchemyError as exc:
        metrics.EVENTS_REJECTED.labels(source, "database").inc()
        log.error("events not stored: database unavailable", extra={"source": source, "error": type(exc).__name__})
        return error(503, "the database cannot store events right now; retry later")
    metrics.EVENTS_ACCEPTED.labels(source).inc(len(accepted))
    if duplicates:
        metrics.EVENTS_DUPLICATE.labels(source).inc(len(duplicates))
    accepted_set = set(accepted)
    leads = list(dict.fromkeys(event.lead.id for event in events if event.event_id in accepted_set))
    redis = current_app.extensions["sla_guard.redis"]
    try:
        for lead_id in leads:
            enqueue(redis, PROCESS_JOB, lead_id, queue_name=current_app.config["SLA_GUARD_QUEUE"])
    except RedisError as exc:
        log.warning("events stored, processing deferred to the reconciler",
                    extra={"source": source, "error": type(exc).__name__, "lead_ids": leads})
    for event in events:
        if event.event_id in accepted_set:
            log.info("event accepted", extra={"source": source, "event_id": event.event_id,
                                              "lead_id": event.lead.id, "type": event.type})
    metrics.INGEST_SECONDS.labels(source).observe(time.perf_counter() - started)
    return jsonify({"accepted": accepted, "duplicates": duplicates}), 202


def _reject(source: str, reason: str, status: int, message: str, field: str | None = None):
    metrics.EVENTS_REJECTED.labels(source, reason).inc()
    log.info("webhook refused", extra={"source": source, "reason": reason, "status": status, "field": field})
    return error(status, message, field=field)


@bp.post("/generic")
def generic():
    started = time.perf_counter()
    secret = current_app.config.get("SLA_GUARD_WEBHOOK_SECRET")
    if not secret:
        return error(404, "the generic webhook is not enabled: set SLA_GUARD_WEBHOOK_SECRET")
    if request.mimetype != "application/json":
        return _reject("generic", "content_type", 415, "Content-Type must be application/json", "Content-Type")
    if (request.content_length or 0) > current_app.config["SLA_GUARD_MAX_BODY_BYTES"]:
        return _reject("generic", "too_large", 413, "request body is over the size limit", "body")
    body = request.get_data(cache=False)
    try:
        verify_signature(request.headers.get(SIGNATURE_HEADER), body, secret, _now().timestamp(),
                         current_app.config["SLA_GUARD_SIGNATURE_MAX_AGE_S"])
    except Unauthorized as exc:
        return _reject("generic", "signature", 401, exc.reason, SIGNATURE_HEADER)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _reject("generic", "malformed", 400, f"body is not valid JSON: {exc}", "body")
    try:
        events = parse_events(payload)
    except InvalidEvent as exc:
        return _reject("generic", "invalid", 400, exc.message, exc.field)
    return ingest("generic", events, started)
