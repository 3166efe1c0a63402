"""Bitrix24 outgoing webhooks → REST look-ups → canonical lead events.

Bitrix24 posts a form (``event=ONCRMLEADADD&data[FIELDS][ID]=1000983&auth[...]``) that says
only *which* record changed, never how. So :func:`parse` returns no events but a
:class:`Lookup` per notification; a worker reads the record with :func:`fetch`
(``crm.lead.get``, ``crm.deal.get``, ``crm.activity.get``) and :func:`derive_events` compares
it with the last known state (:func:`snapshot` of the previous read) to name what happened:

- a new lead/deal → ``lead.created``;
- stage moved → ``lead.stage_changed`` (``previous_stage`` from the last known state), or
  ``lead.closed`` when it reaches a won/lost stage (``STAGE_SEMANTIC_ID`` S/F for deals,
  ``STATUS_ID`` CONVERTED/JUNK for leads) with the reason from ``UF_CRM_LOSS_REASON``;
- ``ASSIGNED_BY_ID`` changed → ``lead.assigned``; title/amount/source → ``lead.updated``;
- nothing changed → nothing (one save often sends several UPDATE notifications);
- a deleted record → ``lead.closed`` without an outcome, reason ``deleted`` (no look-up);
- an activity on a lead/deal: an outgoing call or e-mail, a completed call or meeting, a
  completed task → ``lead.touched``; of the modern activities (``TYPE_ID`` 6), a completed
  to-do (``PROVIDER_ID`` ``CRM_TODO``, including the follow-up to-dos sla-guard created) and an
  open-line chat (``IMOPENLINES_SESSION``) the manager closed or started → ``lead.touched``.

Event ids are built from the record and its ``DATE_MODIFY``, so the same change read twice
gives the same ids. Event names arrive in any letter case. Bitrix24 never retries a delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from sla_guard.core.events import LeadEvent
from sla_guard.core.record_ids import lead_id as record_lead_id
from sla_guard.exceptions import CrmReadError, InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import access, base
from sla_guard.ingest.adapters.base import AdapterResult, Lookup, RawRequest
from sla_guard.outbox.http import Http, bitrix24_query_limit_exceeded, json_object

CRM = "bitrix24"
SETTINGS = access.setting_names(
    CRM,
    "APP_TOKEN",
    "REST_URL",
    "WON_STATUSES",
    "LOST_STATUSES",
    "REASON_FIELD",
    "FIELD_SOURCE",
    "FIELD_PRIORITY",
    "FIELD_TEAM",
)
"""Every setting of Bitrix24."""
(
    APP_TOKEN,
    REST_URL,
    WON_STATUSES,
    LOST_STATUSES,
    REASON_FIELD,
    FIELD_SOURCE,
    FIELD_PRIORITY,
    FIELD_TEAM,
) = SETTINGS

METHODS = {"LEAD": "crm.lead.get", "DEAL": "crm.deal.get", "ACTIVITY": "crm.activity.get"}
"""The REST method that reads each kind of record."""

OWNER_TYPES = {"1": "lead", "2": "deal"}
"""``OWNER_TYPE_ID`` of the records an activity may belong to that sla-guard tracks."""

DEFAULT_MAPPING: dict[str, Any] = {
    "won_semantics": frozenset({"S"}),
    "lost_semantics": frozenset({"F"}),
    "won_statuses": frozenset({"CONVERTED"}),
    "lost_statuses": frozenset({"JUNK"}),
    "reason_field": "UF_CRM_LOSS_REASON",
    "fields": {},
}
"""Won/lost stage semantics (deals and leads) and lead statuses, the field holding the loss
reason, and extra fields read as lead fields (``{"priority": "UF_CRM_PRIORITY"}``)."""

_LEAD_KEYS = ("id", "name", "pipeline", "owner", "amount", "source", "priority", "team", "customer")
_TOUCH_TYPES = {"1": "meeting", "2": "call", "3": "task", "4": "email"}
_PROVIDER_TYPE = "6"
_PROVIDER_TOUCHES = {"CRM_TODO": "task", "IMOPENLINES_SESSION": "message"}
"""Modern activities that are touches: a to-do (the universal activity, which is also what
sla-guard creates for a follow-up) once done, and an open-line chat once the manager closed it
or when the manager started it."""
_OUTGOING = "2"


RestError = CrmReadError
"""A Bitrix24 REST read failed; ``retryable`` says whether trying later may help."""


def mapping_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping with the optional overrides ``SLA_GUARD_BITRIX24_WON_STATUSES`` /
    ``..._LOST_STATUSES`` (lead statuses), ``SLA_GUARD_BITRIX24_REASON_FIELD`` and
    ``SLA_GUARD_BITRIX24_FIELD_PRIORITY`` / ``_TEAM`` / ``_SOURCE`` (field codes)."""
    mapping = dict(DEFAULT_MAPPING)
    mapping["won_statuses"] = access.word_set(settings, WON_STATUSES, DEFAULT_MAPPING["won_statuses"])
    mapping["lost_statuses"] = access.word_set(settings, LOST_STATUSES, DEFAULT_MAPPING["lost_statuses"])
    mapping["reason_field"] = base.text(settings.get(REASON_FIELD)) or DEFAULT_MAPPING["reason_field"]
    mapping["fields"] = access.field_settings(settings, source=FIELD_SOURCE, priority=FIELD_PRIORITY, team=FIELD_TEAM)
    return mapping


def outcome(fields: Mapping[str, Any], mapping: Mapping[str, Any] = DEFAULT_MAPPING) -> str | None:
    """``"won"``, ``"lost"`` or ``None`` for a lead/deal record (or a :func:`snapshot`)."""
    semantic = (
        base.text(fields.get("STAGE_SEMANTIC_ID"))
        or base.text(fields.get("STATUS_SEMANTIC_ID"))
        or base.text(fields.get("semantic"))
    )
    status = base.text(fields.get("STATUS_ID")) or base.text(fields.get("STAGE_ID")) or base.text(fields.get("stage"))
    if semantic in mapping["won_semantics"] or status in mapping["won_statuses"]:
        return "won"
    if semantic in mapping["lost_semantics"] or status in mapping["lost_statuses"]:
        return "lost"
    return None


def enabled(settings: Mapping[str, Any]) -> bool:
    """Bitrix24 is on when the application token and the REST URL are set."""
    return access.configured(settings, APP_TOKEN, REST_URL)


# --- authenticity -------------------------------------------------------------------------


def verify(raw: RawRequest, settings: Mapping[str, Any], now: datetime) -> None:
    """Check ``auth[application_token]`` (constant time) and, when the body names a portal
    (``auth[domain]``), that it is the portal of ``SLA_GUARD_BITRIX24_REST_URL``."""
    [expected] = access.secrets_to_verify(settings, "Bitrix24", APP_TOKEN)
    form = access.form_to_verify(raw, "the body carries no Bitrix24 application token")
    auth = base.group(form, "auth")
    token = base.text(auth.get("application_token"))
    if token is None:
        raise Unauthorized("the body carries no Bitrix24 application token")
    if not access.same_secret(token, expected):
        raise Unauthorized("wrong Bitrix24 application token")
    portal = (urlsplit(base.text(settings.get(REST_URL)) or "").hostname or "").lower()
    domain = (base.text(auth.get("domain")) or "").lower()
    if portal and domain and domain != portal:
        raise Unauthorized("the webhook comes from another Bitrix24 portal")


# --- parsing ------------------------------------------------------------------------------


def parse(raw: RawRequest, settings: Mapping[str, Any]) -> AdapterResult:
    """The look-up a notification needs (or, for a deletion, its event)."""
    form = base.parse_form(raw)
    event = base.require(form.get("event"), "event").upper()
    data = base.group(form, "data")
    fields = base.group(data, "FIELDS")
    record_id = base.require(fields.get("ID"), "data[FIELDS][ID]")
    ts = base.from_unix(base.require(form.get("ts"), "ts"), "ts")
    entity = _entity(event)
    if entity is None:
        return AdapterResult(events=[], ignored=[event.lower()])
    if event.endswith("DELETE"):
        if entity == "ACTIVITY":
            return AdapterResult(events=[], ignored=[event.lower()])
        closed = base.make_event(
            "",
            event_id=f"bitrix24-{entity.lower()}-{record_id}-deleted",
            type="lead.closed",
            occurred_at=ts,
            reason="deleted",
            lead={"id": record_lead_id(CRM, entity.lower(), record_id)},
        )
        return AdapterResult(events=[closed], ignored=[])
    if not (event.endswith("ADD") or event.endswith("UPDATE")):
        return AdapterResult(events=[], ignored=[event.lower()])
    return AdapterResult(events=[], ignored=[], lookups=[Lookup(METHODS[entity], record_id, event, ts)])


def _entity(event: str) -> str | None:
    for entity in METHODS:
        if event.startswith(f"ONCRM{entity}") and event[len(f"ONCRM{entity}") :] in ("ADD", "UPDATE", "DELETE"):
            return entity
    return None


# --- REST ---------------------------------------------------------------------------------


def fetch(rest_url: str, method: str, id: str, session: requests.Session, timeout: float) -> dict[str, Any]:
    """POST ``<rest_url><method>.json?id=<id>`` and return the reply's ``result``.

    Raises :class:`RestError` (never showing the secret part of ``rest_url``): ``retryable``
    for network errors, 5xx and rate limits; not for unknown records or refused access.
    """
    key = rest_url.rstrip("/").rsplit("/", 1)[-1]
    http = Http(
        "Bitrix24",
        session,
        timeout,
        [rest_url, rest_url.rstrip("/"), key],
        REST_URL,
        account=rest_url,
        error=RestError,
        limited=bitrix24_query_limit_exceeded,
    )
    what = f"{method} failed"
    response = http.post(f"{rest_url.rstrip('/')}/{method}.json", what, params={"id": id})
    body = json_object(response)
    error = (body.get("error_description") or body.get("error")) if body else None
    if response.status_code >= 400 or error:
        status = response.status_code
        message = f"{what}: HTTP {status}: {error or 'no error description'}"
        if body and body.get("error") == "QUERY_LIMIT_EXCEEDED":
            raise http.fail(message, rate_limited=True, retry_after_s=1.0, status=status)
        raise http.by_status(response, message)
    if not body or not isinstance(body.get("result"), dict):
        raise http.fail(f"{what}: the reply has no result object", status=response.status_code)
    return body["result"]


# --- deriving events ----------------------------------------------------------------------


def snapshot(rest_result: Mapping[str, Any], mapping: Mapping[str, Any] = DEFAULT_MAPPING) -> dict[str, Any]:
    """What to keep as the last known state of a lead/deal read over REST."""
    record = _unwrap(rest_result)
    return {
        "id": base.text(record.get("ID")),
        "name": base.text(record.get("TITLE")),
        "stage": base.text(record.get("STATUS_ID")) or base.text(record.get("STAGE_ID")),
        "semantic": base.text(record.get("STATUS_SEMANTIC_ID")) or base.text(record.get("STAGE_SEMANTIC_ID")),
        "pipeline": base.text(record.get("CATEGORY_ID")),
        "owner": base.text(record.get("ASSIGNED_BY_ID")),
        "amount": base.amount(record.get("OPPORTUNITY")),
        "source": base.text(record.get("SOURCE_ID")),
        "reason": base.text(record.get(mapping["reason_field"])),
        "modified": base.text(record.get("DATE_MODIFY")),
        "customer": base.customer_id("bitrix24", "company", record.get("COMPANY_ID"))
        or base.customer_id("bitrix24", "contact", record.get("CONTACT_ID")),
        **base.lead_fields(mapping.get("fields", {}), record),
    }


def derive_events(
    lookup: Lookup,
    rest_result: Mapping[str, Any],
    last_known: Mapping[str, Any] | None,
    mapping: Mapping[str, Any] = DEFAULT_MAPPING,
) -> list[LeadEvent]:
    """The events a fetched record means, given its last known :func:`snapshot` (or ``None``)."""
    record = _unwrap(rest_result)
    if lookup.method == METHODS["ACTIVITY"]:
        return _activity_events(lookup, record)
    now = snapshot(record, mapping)
    record_id = base.require(now["id"] or lookup.id, "result.ID")
    entity = "deal" if lookup.method == METHODS["DEAL"] else "lead"
    modified = _time(record.get("DATE_MODIFY"), lookup.ts, "result.DATE_MODIFY")
    stamp = int(modified.timestamp())
    lead = {key: now[key] for key in _LEAD_KEYS if now.get(key) is not None}
    lead["id"] = record_lead_id(CRM, entity, record_id)
    staged = {**lead, "stage": now["stage"]}
    result = outcome(now, mapping)

    def event(kind: str, suffix: str, at: datetime, **extra: Any) -> LeadEvent:
        return base.make_event(
            "result", event_id=f"bitrix24-{entity}-{record_id}-{suffix}", type=kind, occurred_at=at, **extra
        )

    def closed(previous_stage: str | None = None) -> LeadEvent:
        reason = now["reason"] if result == "lost" else None
        return event(
            "lead.closed",
            f"closed-{stamp}",
            modified,
            lead=staged,
            outcome=result,
            previous_stage=previous_stage,
            reason=reason,
        )

    if last_known is None:
        if lookup.event.endswith("ADD"):
            created = _time(record.get("DATE_CREATE"), modified, "result.DATE_CREATE")
            events = [event("lead.created", "created", created, lead=staged)]
        elif result is None:
            events = [event("lead.updated", f"updated-{stamp}", modified, lead=staged)]
        else:
            events = []
        if result:
            events.append(closed())
        return base.ordered(events)
    events = []
    was = outcome(last_known, mapping)
    before_stage = base.text(last_known.get("stage"))
    if result and (not was or before_stage != now["stage"]):
        events.append(closed(before_stage))
    elif before_stage != now["stage"] or (was and not result):
        events.append(event("lead.stage_changed", f"stage-{stamp}", modified, lead=staged, previous_stage=before_stage))
    elif result == "lost" and now["reason"] and now["reason"] != base.text(last_known.get("reason")):
        events.append(event("lead.updated", f"reason-{stamp}", modified, lead=lead, reason=now["reason"]))
    if now["owner"] != base.text(last_known.get("owner")) and now["owner"]:
        events.append(
            event(
                "lead.assigned",
                f"assigned-{stamp}",
                modified,
                lead=lead,
                previous_owner=base.text(last_known.get("owner")),
            )
        )
    if not events and any(now.get(key) != last_known.get(key) for key in ("name", "amount", "source", "pipeline")):
        events.append(event("lead.updated", f"updated-{stamp}", modified, lead=lead))
    return base.ordered(events)


def _channel(record: Mapping[str, Any]) -> str | None:
    """The touch channel of an activity's kind: classic types by ``TYPE_ID``; the modern ones
    (``TYPE_ID`` 6, "provider" activities) by ``PROVIDER_ID``."""
    type_id = base.text(record.get("TYPE_ID")) or ""
    if type_id == _PROVIDER_TYPE:
        return _PROVIDER_TOUCHES.get((base.text(record.get("PROVIDER_ID")) or "").upper())
    return _TOUCH_TYPES.get(type_id)


def _activity_events(lookup: Lookup, record: Mapping[str, Any]) -> list[LeadEvent]:
    """One touch per activity: outgoing calls, e-mails and chats, completed calls, meetings,
    tasks, to-dos and open-line chats."""
    owner_type = OWNER_TYPES.get(base.text(record.get("OWNER_TYPE_ID")) or "")
    channel = _channel(record)
    if owner_type is None or channel is None:
        return []
    completed = base.text(record.get("COMPLETED")) == "Y"
    outgoing = base.text(record.get("DIRECTION")) == _OUTGOING
    if not (completed or (outgoing and channel in ("call", "email", "message"))):
        return []
    if channel == "email" and not outgoing:
        return []  # the client wrote: that asks for an answer, it is not one
    activity_id = base.require(record.get("ID") or lookup.id, "result.ID")
    lead_id = record_lead_id(CRM, owner_type, base.require(record.get("OWNER_ID"), "result.OWNER_ID"))
    # when it was logged or marked done; END_TIME may be a planned time still in the future
    at = _time(record.get("LAST_UPDATED") or record.get("CREATED"), lookup.ts, "result.LAST_UPDATED")
    by = base.text(record.get("RESPONSIBLE_ID")) or base.text(record.get("AUTHOR_ID"))
    return [
        base.make_event(
            "result",
            event_id=f"bitrix24-activity-{activity_id}-touched",
            type="lead.touched",
            occurred_at=at,
            lead={"id": lead_id},
            touch={"channel": channel, "by": by, "task_id": activity_id},
        )
    ]


def _unwrap(rest_result: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the whole REST reply (``{"result": {...}}``) as well as its ``result``."""
    if "ID" not in rest_result and isinstance(rest_result.get("result"), dict):
        return rest_result["result"]
    return rest_result


def _time(value: Any, fallback: datetime | None, where: str) -> datetime:
    if base.text(value) is None:
        if fallback is None:
            raise InvalidEvent(where, "is missing")
        return fallback
    return base.from_iso(value, where)
