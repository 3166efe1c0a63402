"""CRM work done after a webhook is acknowledged: REST read-backs and enrichment.

Bitrix24's notifications say only which record changed. The webhook stores one look-up row
per notification (:func:`sla_guard.store.crm.insert_lookups`, in the transaction that acknowledges it) and queues
the job :func:`crm_lookup`; :func:`run_lookup` then reads the record over the portal's REST API,
compares it with the last state read (a ``crm_records`` row), stores the events that follow in
the inbox, saves the new state, marks the look-up done and applies the leads' events. Look-ups
are an outbox kind (:class:`Lookups`): a failed read is retried with a growing wait, the
reconciler queues again any look-up whose job was lost, and after :data:`LOOKUP_MAX_ATTEMPTS`
attempts, or at once for an error retrying cannot fix (an unknown record, refused access), the
look-up is finished with its ``last_error`` kept.

amoCRM's webhook carries no loss reason; where REST credentials are set, a :class:`LossReasons`
item is recorded with the events and :func:`read_loss_reason` reads it (``GET /api/v4/leads/{id}?with=loss_reason``) and stores it as a ``lead.updated``
event carrying ``reason``.

The REST URLs and tokens are secrets: they never appear in logs, errors or stored rows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy.orm import Session

from sla_guard import runtime as runtime_module
from sla_guard.config import Settings, crm_settings
from sla_guard.core.bounds import TEXT_MAX, check_events, clean_text
from sla_guard.core.events import Lead, LeadEvent
from sla_guard.core.record_ids import crm_record
from sla_guard.exceptions import CrmReadError, DeliveryError, InvalidEvent
from sla_guard.ingest.adapters import amocrm, bitrix24
from sla_guard.ingest.adapters.base import Lookup, from_iso, text
from sla_guard.ingest.processing import process_lead
from sla_guard.outbox.base import ItemKind, OutboxKind, Retry, doubling
from sla_guard.outbox.delivery import OPS_ALERTS
from sla_guard.outbox.http import Http, is_transient_status, json_object
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.crm import last_known, lookup_done, save_record
from sla_guard.store.models import CrmLookupRow
from sla_guard.store.repository import event_time, insert_events

log = logging.getLogger("sla_guard.ingest.crm_sync")

REST_TIMEOUT_S = 10.0
"""Longest wait for one CRM REST call."""

LOOKUP_MAX_ATTEMPTS = 8
"""Attempts of a look-up before it is given up (about 11 minutes of waits in all)."""

BACKOFF_CAP_S = 600.0
"""Longest wait between two attempts of a look-up."""


# --- look-ups -------------------------------------------------------------------------------


class Lookups(OutboxKind):
    """Bitrix24 read-backs: one row per notification, done when its record was read."""

    name = "lookup"
    what = "Bitrix24 look-up"
    model = CrmLookupRow
    claimed_status = None
    created_column = "received_at"
    not_claimed = "skipped"
    retrying = "retry"

    def retry(self, runtime: Runtime) -> Retry:
        return Retry(LOOKUP_MAX_ATTEMPTS, doubling(5, BACKOFF_CAP_S))

    def is_open(self):
        return CrmLookupRow.done_at.is_(None)

    def retry_values(self, error: str, at: datetime) -> dict:
        return {"last_error": error, "claimed_until": at}

    def failed_values(self, error: str, now: datetime) -> dict:
        return {"done_at": now, "last_error": error, "claimed_until": None}

    def context(self, row: CrmLookupRow) -> dict:
        return {"lookup_id": row.id, "method": row.method, "record_id": row.record_id, "attempt": row.attempts}

    def attempt(self, runtime: Runtime, row: CrmLookupRow) -> str:
        return _read_back(runtime, row, self.context(row))


@job()
def crm_lookup(lookup_id: int) -> str:
    """Job: one attempt of a Bitrix24 look-up."""
    return LOOKUPS.run(runtime_module.current(), lookup_id)


LOOKUPS = Lookups(crm_lookup, ops=OPS_ALERTS)


def lookup_job_id(queue_name: str, lookup_id: int, attempt: int) -> str:
    """Deterministic id of the job doing attempt ``attempt`` (1, 2, …) of a look-up."""
    return LOOKUPS.job_id(queue_name, lookup_id, attempt)


def run_lookup(runtime: Runtime, lookup_id: int) -> str:
    """Do one attempt of a Bitrix24 look-up; return ``done``, ``retry``, ``failed`` or ``skipped``."""
    return LOOKUPS.run(runtime, lookup_id)


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


def _read_back(runtime: Runtime, row: CrmLookupRow, context: dict) -> str:
    """Read the record, store the events that follow, mark the look-up done; ``done``."""
    lookup = Lookup(row.method, row.record_id, row.event, row.sent_at)
    settings = crm_settings(runtime.settings, bitrix24.CRM)
    rest_url = text(settings.get(bitrix24.REST_URL))
    if rest_url is None:
        raise DeliveryError(f"{bitrix24.REST_URL} is not set")
    record = bitrix24.fetch(rest_url, lookup.method, lookup.id, runtime.http(), REST_TIMEOUT_S)
    mapping = bitrix24.mapping_from_settings(settings)
    kind = lookup.method.split(".")[1]
    now = runtime.now()
    with runtime.db.session() as session:
        known = last_known(session, bitrix24.CRM, kind, lookup.id) if kind != "activity" else None
        state = bitrix24.snapshot(record, mapping) if kind != "activity" else None
        stale = _stale(known, state or {})
        # A creation is read as one even when an UPDATE of the record was read first (the ADD's
        # read failed and was retried): its event id is fixed, so it is never recorded twice.
        adding = lookup.event.endswith("ADD")
        try:
            events = (
                []
                if stale and not adding
                else bitrix24.derive_events(lookup, record, None if adding else known, mapping)
            )
            check_events(events, now, "result")  # the portal's dates are held to the input bounds too
        except InvalidEvent as exc:
            raise DeliveryError(f"the portal's reply is not usable: {exc}") from None
        accepted, _ = insert_events(session, bitrix24.CRM, events, now)
        if state is not None and not stale:
            save_record(session, bitrix24.CRM, kind, state.get("id") or lookup.id, state, now)
        lookup_done(session, row.id, now)
    log.info("Bitrix24 look-up done", extra={**context, "events": accepted})
    stored = set(accepted)
    for lead_id in dict.fromkeys(event.lead.id for event in events if event.event_id in stored):
        process_lead(runtime, lead_id)
    return "done"


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


def read_loss_reason(runtime: Runtime, lead_id: str, closed_event_id: str) -> str | None:
    """Read a lost lead's reason and store it as a ``lead.updated`` event at the closure's time."""
    amo = crm_settings(runtime.settings, amocrm.CRM)
    base_url, token = text(amo.get(amocrm.BASE_URL)), text(amo.get(amocrm.ACCESS_TOKEN))
    context = {"lead_id": lead_id, "event_id": closed_event_id}
    if not (base_url and token):
        return None
    with runtime.db.session() as session:
        closed_at = event_time(session, amocrm.CRM, closed_event_id)
    if closed_at is None:
        return None
    http = Http(
        "amoCRM", runtime.http(), REST_TIMEOUT_S, [token], amocrm.ACCESS_TOKEN, account=base_url, error=CrmReadError
    )
    record = crm_record(lead_id)
    native = record.id if record else lead_id  # ``amocrm:lead:<id>``; older items held the bare id
    response = http.request(
        "GET",
        f"{base_url.rstrip('/')}/api/v4/leads/{native}",
        f"reading lead {native}",
        params={"with": "loss_reason"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    if is_transient_status(response.status_code):
        raise http.by_status(response, f"reading lead {native}: HTTP {response.status_code}")
    reply = json_object(response) if response.status_code == 200 else None
    if reply is None:
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
        reason=clean_text(reason, TEXT_MAX),
    )
    with runtime.db.session() as session:
        accepted, _ = insert_events(session, amocrm.CRM, [event], runtime.now())
    if accepted:
        log.info("amoCRM loss reason stored", extra=context)
        process_lead(runtime, lead_id)
    return reason


class LossReasons(ItemKind):
    """Reading a lost amoCRM lead's loss reason: one item per lost closure, kept until read."""

    name = "loss-reason"
    what = "amoCRM loss-reason read"

    def attempt(self, runtime: Runtime, row) -> str:
        args = json.loads(row.args)
        outcome = "stored" if read_loss_reason(runtime, args["lead_id"], args["event_id"]) else "none"
        self.done(runtime, row.id, outcome)
        return outcome


@job()
def amocrm_loss_reason(item_id: int) -> str:
    """Job: one attempt at reading an amoCRM lead's loss reason."""
    return LOSS_REASONS.run(runtime_module.current(), item_id)


LOSS_REASONS = LossReasons(amocrm_loss_reason, ops=OPS_ALERTS)


def record_loss_reasons(
    session: Session, settings: dict, events: Iterable[LeadEvent], now: datetime
) -> list[tuple[OutboxKind, int]]:
    """Record a loss-reason read for each newly lost amoCRM lead (REST credentials set), in the
    transaction that stores the events; the items to queue."""
    items = []
    for lead_id, event_id in loss_reason_wanted(settings, events):
        item_id = LOSS_REASONS.add(session, event_id, {"lead_id": lead_id, "event_id": event_id}, now)
        if item_id is not None:
            items.append((LOSS_REASONS, item_id))
    return items
