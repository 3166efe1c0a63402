"""CRM work done after a webhook is acknowledged: REST read-backs and enrichment.

Bitrix24's notifications say only which record changed. The webhook stores one look-up row
per notification (:func:`insert_lookups`, in the transaction that acknowledges it) and queues
:data:`LOOKUP_JOB`; :func:`run_lookup` then reads the record over the portal's REST API,
compares it with the last state read (a ``crm_records`` row), stores the events that follow in
the inbox, saves the new state, marks the look-up done and applies the leads' events. A
failed read is retried with a growing wait (:func:`lookup_backoff_s`); the reconciler queues
again any look-up whose job was lost (:func:`lookups_to_retry`). After
:data:`LOOKUP_MAX_ATTEMPTS` attempts, or at once for an error retrying cannot fix (an unknown
record, refused access), the look-up is finished with its ``last_error`` kept.

amoCRM's webhook carries no loss reason; where REST credentials are set, :func:`read_loss_reason`
reads it (``GET /api/v4/leads/{id}?with=loss_reason``) and stores it as a ``lead.updated``
event carrying ``reason``.

The REST URLs and tokens are secrets: they never appear in logs, errors or stored rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

import requests
from redis.exceptions import RedisError
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sla_guard.config import Settings, crm_settings
from sla_guard.core.events import Lead, LeadEvent
from sla_guard.exceptions import InvalidEvent
from sla_guard.ingest.adapters import amocrm, bitrix24
from sla_guard.ingest.adapters.base import Lookup, from_iso, text
from sla_guard.ingest.processing import process_lead
from sla_guard.queueing import enqueue
from sla_guard.runtime import Runtime
from sla_guard.store.models import CrmLookupRow, CrmRecordRow, EventRow
from sla_guard.store.repository import dialect_insert, insert_events

log = logging.getLogger("sla_guard.outbox.crm_sync")

LOOKUP_JOB = "workers.jobs.crm_lookup"
"""Dotted path of the job that does one look-up."""

LOSS_REASON_JOB = "workers.jobs.amocrm_loss_reason"
"""Dotted path of the job that reads an amoCRM lead's loss reason."""

REST_TIMEOUT_S = 10.0
"""Longest wait for one CRM REST call."""

LOOKUP_MAX_ATTEMPTS = 8
"""Attempts of a look-up before it is given up (about 11 minutes of waits in all)."""

LOOKUP_GRACE = timedelta(seconds=5)
"""A look-up younger than this is left to the job queued when it was accepted."""

BACKOFF_CAP_S = 600.0
"""Longest wait between two attempts of a look-up."""

_ACTIVE = ("scheduled", "queued", "started", "deferred")


# --- look-ups: storing and scheduling -------------------------------------------------------


def insert_lookups(session: Session, crm: str, lookups: Iterable[Lookup], received_at: datetime):
    """Store look-ups, once per ``(crm, key)``; return ``([(row id, key)] new, [key] repeated)``."""
    rows, seen, repeated = [], set(), []
    for lookup in lookups:
        if lookup.key in seen:
            repeated.append(lookup.key)
            continue
        seen.add(lookup.key)
        rows.append(
            {
                "crm": crm,
                "lookup_key": lookup.key,
                "method": lookup.method,
                "record_id": lookup.id,
                "event": lookup.event,
                "sent_at": lookup.ts,
                "received_at": received_at,
                "attempts": 0,
            }
        )
    if not rows:
        return [], repeated
    statement = (
        dialect_insert(session, CrmLookupRow)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["crm", "lookup_key"])
        .returning(CrmLookupRow.id, CrmLookupRow.lookup_key)
    )
    stored = {key: row_id for row_id, key in session.execute(statement).all()}
    new = [(stored[row["lookup_key"]], row["lookup_key"]) for row in rows if row["lookup_key"] in stored]
    repeated.extend(row["lookup_key"] for row in rows if row["lookup_key"] not in stored)
    return new, repeated


def lookup_job_id(queue_name: str, lookup_id: int, attempt: int) -> str:
    """Deterministic id of the job doing attempt ``attempt`` (1, 2, …) of a look-up."""
    return f"{queue_name}-lookup-{lookup_id}-{attempt}"


def schedule_lookup(
    redis,
    queue_name: str,
    lookup_id: int,
    attempt: int,
    at: datetime | None = None,
    *,
    overdue_before: datetime | None = None,
) -> bool:
    """Queue attempt ``attempt`` of a look-up (at ``at``, or now) unless its job is already
    waiting or running; a failed job of that attempt is replaced, and so is a scheduled one
    due before ``overdue_before`` (the scheduler is not working). True when a job was written."""
    job_id = lookup_job_id(queue_name, lookup_id, attempt)
    existing = Job.fetch_many([job_id], connection=redis)[0]
    if existing is not None:
        status = existing.get_status(refresh=False)
        if status == "scheduled" and overdue_before is not None:
            score = redis.zscore(ScheduledJobRegistry(queue_name, connection=redis).key, job_id)
            if score is None or score > overdue_before.timestamp():
                return False
        elif status in _ACTIVE:
            return False
        existing.delete()
    enqueue(redis, LOOKUP_JOB, lookup_id, job_id=job_id, at=at, retry=None, queue_name=queue_name)
    return True


def lookup_backoff_s(attempts: int) -> float:
    """The wait after ``attempts`` failed attempts: 5, 10, 20, … seconds, capped at 10 minutes."""
    return min(BACKOFF_CAP_S, 5.0 * 2 ** max(0, attempts - 1))


def lookup_wait(attempts: int) -> timedelta:
    """How long after its arrival a look-up with ``attempts`` failed attempts is due again at
    the earliest (the sum of its waits, plus :data:`LOOKUP_GRACE`)."""
    return LOOKUP_GRACE + timedelta(seconds=sum(lookup_backoff_s(n) for n in range(1, attempts + 1)))


def lookups_to_retry(session: Session, now: datetime, limit: int = 500) -> list[tuple[int, int]]:
    """Look-ups not done whose wait is over: ``(lookup id, attempts so far)``."""
    rows = session.execute(
        select(CrmLookupRow.id, CrmLookupRow.attempts, CrmLookupRow.received_at)
        .where(CrmLookupRow.done_at.is_(None), CrmLookupRow.received_at <= now - LOOKUP_GRACE)
        .order_by(CrmLookupRow.id)
        .limit(limit)
    ).all()
    return [(row.id, row.attempts) for row in rows if row.received_at + lookup_wait(row.attempts) <= now]


# --- look-ups: doing one --------------------------------------------------------------------


def _claim(runtime: Runtime, lookup_id: int) -> tuple[Lookup, int, str | None] | None:
    """Count one more attempt of a look-up not done yet: ``(look-up, attempts, last error)``,
    or None when it is done or unknown."""
    with runtime.db.session() as session:
        claimed = session.execute(
            update(CrmLookupRow)
            .where(CrmLookupRow.id == lookup_id, CrmLookupRow.done_at.is_(None))
            .values(attempts=CrmLookupRow.attempts + 1)
        ).rowcount
        if not claimed:
            return None
        row = session.execute(select(CrmLookupRow).where(CrmLookupRow.id == lookup_id)).scalar_one()
        return Lookup(row.method, row.record_id, row.event, row.sent_at), row.attempts, row.last_error


def _finish(session: Session, lookup_id: int, now: datetime, error: str | None = None) -> None:
    session.execute(
        update(CrmLookupRow)
        .where(CrmLookupRow.id == lookup_id)
        .values(done_at=now, last_error=error[:2000] if error else None)
    )


def _give_up(runtime: Runtime, lookup_id: int, error: str, context: dict) -> str:
    with runtime.db.session() as session:
        _finish(session, lookup_id, runtime.now(), error)
    log.error("Bitrix24 look-up given up", extra={**context, "error": error})
    return "failed"


def _stale(last_known: dict | None, record: dict) -> bool:
    """True when the record read is older than the state already known (a late read)."""
    before = text((last_known or {}).get("modified"))
    after = text(record.get("modified"))
    if not before or not after:
        return False
    try:
        return from_iso(after, "modified") < from_iso(before, "modified")
    except InvalidEvent:
        return False


def run_lookup(runtime: Runtime, lookup_id: int) -> str:
    """Do one attempt of a Bitrix24 look-up; return ``done``, ``retry``, ``failed`` or ``skipped``."""
    claimed = _claim(runtime, lookup_id)
    if claimed is None:
        return "skipped"
    lookup, attempt, last_error = claimed
    context = {"lookup_id": lookup_id, "method": lookup.method, "record_id": lookup.id, "attempt": attempt}
    if attempt > LOOKUP_MAX_ATTEMPTS:
        return _give_up(
            runtime, lookup_id, f"gave up after {LOOKUP_MAX_ATTEMPTS} attempts; last error: {last_error}", context
        )
    settings = crm_settings(runtime.settings, bitrix24.CRM)
    rest_url = text(settings.get(bitrix24.REST_URL))
    if rest_url is None:
        return _give_up(runtime, lookup_id, f"{bitrix24.REST_URL} is not set", context)
    try:
        record = bitrix24.fetch(rest_url, lookup.method, lookup.id, runtime.http(), REST_TIMEOUT_S)
    except bitrix24.RestError as exc:
        if not exc.retryable or attempt >= LOOKUP_MAX_ATTEMPTS:
            return _give_up(runtime, lookup_id, str(exc), context)
        wait = lookup_backoff_s(attempt)
        with runtime.db.session() as session:
            session.execute(update(CrmLookupRow).where(CrmLookupRow.id == lookup_id).values(last_error=str(exc)[:2000]))
        log.warning("Bitrix24 look-up failed, will retry", extra={**context, "error": str(exc), "retry_in_s": wait})
        try:
            schedule_lookup(
                runtime.redis, runtime.queue_name, lookup_id, attempt + 1, runtime.now() + timedelta(seconds=wait)
            )
        except RedisError as redis_exc:  # the reconciler queues it when the wait is over
            log.warning("look-up retry not queued", extra={**context, "error": type(redis_exc).__name__})
        return "retry"
    mapping = bitrix24.mapping_from_settings(settings)
    kind = lookup.method.split(".")[1]
    now = runtime.now()
    with runtime.db.session() as session:
        last_known = _last_known(session, kind, lookup.id) if kind != "activity" else None
        state = bitrix24.snapshot(record, mapping) if kind != "activity" else None
        stale = _stale(last_known, state or {})
        # A creation is read as one even when an UPDATE of the record was read first (the ADD's
        # read failed and was retried): its event id is fixed, so it is never recorded twice.
        adding = lookup.event.endswith("ADD")
        try:
            events = (
                []
                if stale and not adding
                else bitrix24.derive_events(lookup, record, None if adding else last_known, mapping)
            )
        except InvalidEvent as exc:
            _finish(session, lookup_id, now, f"the portal's reply is not usable: {exc}")
            log.error("Bitrix24 look-up given up", extra={**context, "error": str(exc)})
            return "failed"
        accepted, _ = insert_events(session, bitrix24.CRM, events, now)
        if state is not None and not stale:
            _save_state(session, kind, state.get("id") or lookup.id, state, now)
        _finish(session, lookup_id, now)
    log.info("Bitrix24 look-up done", extra={**context, "events": accepted})
    stored = set(accepted)
    for lead_id in dict.fromkeys(event.lead.id for event in events if event.event_id in stored):
        process_lead(runtime, lead_id)
    return "done"


def _last_known(session: Session, kind: str, record_id: str) -> dict | None:
    statement = select(CrmRecordRow).where(
        CrmRecordRow.crm == bitrix24.CRM, CrmRecordRow.kind == kind, CrmRecordRow.record_id == record_id
    )
    if session.bind.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = session.execute(statement).scalar_one_or_none()
    return json.loads(row.data) if row else None


def _save_state(session: Session, kind: str, record_id: str, state: dict, now: datetime) -> None:
    data = json.dumps(state, ensure_ascii=False)
    session.execute(
        dialect_insert(session, CrmRecordRow)
        .values(crm=bitrix24.CRM, kind=kind, record_id=record_id, data=data, updated_at=now)
        .on_conflict_do_update(index_elements=["crm", "kind", "record_id"], set_={"data": data, "updated_at": now})
    )


# --- amoCRM loss reasons --------------------------------------------------------------------


def loss_reason_wanted(settings: Settings, events: Iterable[LeadEvent]) -> list[tuple[str, str]]:
    """``(lead id, event id)`` of the lost closures whose reason must be read over REST,
    when amoCRM's REST credentials are set."""
    amo = crm_settings(settings, amocrm.CRM)
    if not (text(amo.get(amocrm.BASE_URL)) and text(amo.get(amocrm.ACCESS_TOKEN))):
        return []
    return [
        (event.lead.id, event.event_id)
        for event in events
        if event.type == "lead.closed" and event.outcome == "lost" and not event.reason
    ]


def loss_reason(reply: dict) -> str | None:
    """The loss reason's name from a ``GET /api/v4/leads/{id}?with=loss_reason`` reply."""
    embedded = reply.get("_embedded") if isinstance(reply.get("_embedded"), dict) else {}
    reasons = [item for item in embedded.get("loss_reason") or [] if isinstance(item, dict)]
    wanted = text(reply.get("loss_reason_id"))
    chosen = next((item for item in reasons if text(item.get("id")) == wanted), reasons[0] if reasons else None)
    return text(chosen.get("name")) if chosen else None


class AmoRestError(Exception):
    """An amoCRM REST read failed; raised (so that the job is retried) only when trying later may help."""


def read_loss_reason(runtime: Runtime, lead_id: str, closed_event_id: str) -> str | None:
    """Read a lost lead's reason and store it as a ``lead.updated`` event at the closure's time."""
    amo = crm_settings(runtime.settings, amocrm.CRM)
    base_url, token = text(amo.get(amocrm.BASE_URL)), text(amo.get(amocrm.ACCESS_TOKEN))
    context = {"lead_id": lead_id, "event_id": closed_event_id}
    if not (base_url and token):
        return None
    with runtime.db.session() as session:
        closed_at = session.execute(
            select(EventRow.occurred_at).where(EventRow.source == amocrm.CRM, EventRow.event_id == closed_event_id)
        ).scalar()
    if closed_at is None:
        return None
    url = f"{base_url.rstrip('/')}/api/v4/leads/{lead_id}"
    try:
        response = runtime.http().get(
            url,
            params={"with": "loss_reason"},
            timeout=REST_TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
    except requests.RequestException as exc:
        raise AmoRestError(f"amoCRM lead read failed: {type(exc).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise AmoRestError(f"amoCRM lead read failed: HTTP {response.status_code}")
    try:
        reply = response.json() if response.status_code == 200 else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        log.warning("amoCRM loss reason not read", extra={**context, "status": response.status_code})
        return None
    reason = loss_reason(reply)
    if reason is None:
        return None
    event = LeadEvent(
        event_id=f"{closed_event_id}-reason",
        type="lead.updated",
        occurred_at=closed_at,
        lead=Lead(id=lead_id),
        reason=reason[:2000],
    )
    with runtime.db.session() as session:
        accepted, _ = insert_events(session, amocrm.CRM, [event], runtime.now())
    if accepted:
        log.info("amoCRM loss reason stored", extra=context)
        process_lead(runtime, lead_id)
    return reason
