"""HubSpot webhooks → canonical lead events.

HubSpot posts a JSON array of up to 100 events, in no guaranteed order and possibly more
than once (``attemptNumber`` > 0 is a retry of the same ``eventId``). Each request is signed
with ``X-HubSpot-Signature-v3``: base64 HMAC-SHA256 keyed with the app's client secret over
method + URI + raw body + ``X-HubSpot-Request-Timestamp`` (milliseconds); requests older than
five minutes are refused.

Both the legacy subscription types (``deal.propertyChange``) and the generic ones
(``object.propertyChange`` with ``objectTypeId`` ``0-3``) are read. What each turns into:

- ``contact.creation`` / ``deal.creation`` (and HubSpot's ``lead`` object) → ``lead.created``;
- a change of the stage property (``dealstage`` for deals, ``hs_lead_status`` for contacts):
  ``closedwon``/``closedlost`` → ``lead.closed``, any other value → ``lead.stage_changed``;
- ``hubspot_owner_id`` → ``lead.assigned``; ``amount``/``dealname``/``pipeline`` →
  ``lead.updated``;
- ``closed_lost_reason``: when the same batch closes the deal as lost, the reason goes on
  that ``lead.closed``; alone, it becomes a ``lead.updated`` carrying the reason (it never
  closes a deal by itself, since the property can be edited on an open deal);
- an association between an engagement (call, meeting; e-mails and messages when configured)
  and a deal/contact → ``lead.touched``. An engagement's creation alone does not say which
  lead it belongs to, so it is acknowledged and ignored;
- ``*.deletion`` → ``lead.closed`` without an outcome, reason ``deleted``; ``*.restore`` →
  ``lead.stage_changed`` (the lead reopens).

The event id is ``hubspot-<eventId>``; a closing reason merged into its closure keeps the
closure's id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sla_guard.core.events import LeadEvent
from sla_guard.core.record_ids import lead_id as record_lead_id
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import access, base
from sla_guard.ingest.adapters.base import AdapterResult, RawRequest

CRM = "hubspot"
SETTINGS = access.setting_names(
    CRM,
    "CLIENT_SECRET",
    "PUBLIC_URL",
    "APP_URL",
    "WON_STAGES",
    "LOST_STAGES",
    "TOUCH_OBJECTS",
    "ACCESS_TOKEN",
    "API_URL",
)
"""Every setting of HubSpot (the REST ones are read by the workers, not by this module)."""
(
    CLIENT_SECRET,
    PUBLIC_URL,
    APP_URL,
    WON_STAGES,
    LOST_STAGES,
    TOUCH_OBJECTS,
    ACCESS_TOKEN,
    API_URL,
) = SETTINGS
MAX_AGE = timedelta(minutes=5)

OBJECT_TYPES = {
    "0-1": "contact",
    "0-3": "deal",
    "0-136": "lead",
    "0-2": "company",
    "0-5": "ticket",
    "0-27": "task",
    "0-46": "note",
    "0-47": "meeting",
    "0-48": "call",
    "0-49": "email",
    "0-18": "communication",
}
"""HubSpot's object type ids (generic subscriptions) and the names legacy subscriptions use."""

DEFAULT_MAPPING: dict[str, Any] = {
    "lead_objects": frozenset({"contact", "deal", "lead"}),
    "stage_property": {"deal": "dealstage", "contact": "hs_lead_status", "lead": "hs_pipeline_stage"},
    "won": frozenset({"closedwon"}),
    "lost": frozenset({"closedlost"}),
    "touches": {"call": "call", "meeting": "meeting"},
    "optional_touches": {"email": "email", "communication": "message"},
    "updated_properties": {
        "amount": "amount",
        "dealname": "name",
        "pipeline": "pipeline",
        "associatedcompanyid": "customer",
    },
    "reason_property": "closed_lost_reason",
    "owner_property": "hubspot_owner_id",
}
"""How HubSpot objects and values map to sla-guard's. E-mails and messages are not touches by
default: a webhook does not say whether the client or the manager wrote, and a client's
e-mail must not stop the first-touch clock."""

_URI_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def mapping_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping with the optional overrides: ``SLA_GUARD_HUBSPOT_WON_STAGES`` and
    ``..._LOST_STAGES`` (comma-separated stage ids of every pipeline) and
    ``SLA_GUARD_HUBSPOT_TOUCH_OBJECTS`` (engagements that count as touches, default
    ``call,meeting``; ``email`` and ``communication`` may be added)."""
    mapping = dict(DEFAULT_MAPPING)
    mapping["won"] = access.word_set(settings, WON_STAGES, DEFAULT_MAPPING["won"])
    mapping["lost"] = access.word_set(settings, LOST_STAGES, DEFAULT_MAPPING["lost"])
    known = {**DEFAULT_MAPPING["touches"], **DEFAULT_MAPPING["optional_touches"]}
    chosen = access.word_set(settings, TOUCH_OBJECTS, DEFAULT_MAPPING["touches"])
    mapping["touches"] = {name: known.get(name, name) for name in chosen}
    return mapping


def enabled(settings: Mapping[str, Any]) -> bool:
    """HubSpot is on when the app's client secret is set."""
    return access.configured(settings, CLIENT_SECRET)


# --- authenticity -------------------------------------------------------------------------


def signed_uri(raw: RawRequest, settings: Mapping[str, Any]) -> str:
    """The URI HubSpot signed: the public URL setting if given, else the URL the server saw,
    with the percent-escapes HubSpot decodes before signing decoded."""
    uri = base.text(settings.get(PUBLIC_URL)) or raw.url
    for escape, char in _URI_DECODE.items():
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return uri


def signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """The v3 signature HubSpot sends for this request."""
    message = method.upper().encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify(raw: RawRequest, settings: Mapping[str, Any], now: datetime) -> None:
    """Check ``X-HubSpot-Signature-v3`` and that the request is at most five minutes old
    (or early) relative to ``now``. Older signature versions are refused."""
    [secret] = access.secrets_to_verify(settings, "HubSpot", CLIENT_SECRET)
    given = base.header(raw, "X-HubSpot-Signature-v3")
    stamp = base.header(raw, "X-HubSpot-Request-Timestamp")
    if not given or not stamp:
        raise Unauthorized("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
    if not stamp.strip().isdigit():
        raise Unauthorized("X-HubSpot-Request-Timestamp is not a number")
    try:
        sent = base.from_unix(stamp.strip(), "X-HubSpot-Request-Timestamp", millis=True)
    except InvalidEvent:
        raise Unauthorized("X-HubSpot-Request-Timestamp is out of range") from None
    if abs(now - sent) > MAX_AGE:
        raise Unauthorized("stale HubSpot request: the timestamp is more than 5 minutes away")
    expected = signature(secret, raw.method, signed_uri(raw, settings), raw.body, stamp.strip())
    if not access.same_secret(given.strip(), expected):
        raise Unauthorized("bad HubSpot signature")


# --- parsing ------------------------------------------------------------------------------


def parse(raw: RawRequest, settings: Mapping[str, Any]) -> AdapterResult:
    """The lead events of a HubSpot batch, sorted by ``occurredAt``."""
    payload = base.parse_json(raw)
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise InvalidEvent("body", "expected a non-empty JSON array of HubSpot events")
    mapping = mapping_from_settings(settings)
    app_url = (base.text(settings.get(APP_URL)) or "https://app.hubspot.com").rstrip("/")
    notes: list[tuple[int, dict[str, Any], LeadEvent]] = []
    ignored: list[str] = []
    for index, item in enumerate(payload):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise InvalidEvent(where, "expected a JSON object")
        kind = _kind(item)
        event = _event(item, kind, where, mapping, app_url)
        if event is None:
            ignored.append(kind)
        else:
            notes.append((index, item, event))
    return AdapterResult(events=base.ordered(base.unique(_merge_reasons(notes, mapping))), ignored=ignored)


def _kind(item: dict[str, Any]) -> str:
    """``deal.propertyChange`` for both the legacy and the generic subscription types."""
    kind = base.text(item.get("subscriptionType")) or "unknown"
    if kind.startswith("object."):
        type_id = base.text(item.get("objectTypeId")) or base.text(item.get("fromObjectTypeId")) or "object"
        name = OBJECT_TYPES.get(type_id, type_id)
        kind = f"{name}.{kind.split('.', 1)[1]}"
    return kind


def _event(item: dict[str, Any], kind: str, where: str, mapping: Mapping[str, Any], app_url: str) -> LeadEvent | None:
    obj, _, action = kind.partition(".")
    if action == "associationChange":
        return _touch(item, where, mapping)
    if obj not in mapping["lead_objects"]:
        return None
    event_id = f"hubspot-{base.require(item.get('eventId'), f'{where}.eventId')}"
    lead_id = base.require(item.get("objectId"), f"{where}.objectId")
    moment = base.from_unix(
        base.require(item.get("occurredAt"), f"{where}.occurredAt"), f"{where}.occurredAt", millis=True
    )
    lead: dict[str, Any] = {"id": record_lead_id(CRM, obj, lead_id), "url": _url(item, obj, lead_id, app_url)}
    common = dict(event_id=event_id, occurred_at=moment)
    if action == "creation":
        return base.make_event(where, type="lead.created", lead=lead, **common)
    if action == "deletion":
        return base.make_event(where, type="lead.closed", reason="deleted", lead=lead, **common)
    if action == "restore":
        return base.make_event(where, type="lead.stage_changed", lead=lead, **common)
    if action != "propertyChange":
        return None
    prop = base.text(item.get("propertyName"))
    value = base.text(item.get("propertyValue"))
    if prop == mapping["stage_property"].get(obj):
        if value is None:
            return None
        lead["stage"] = value
        result = base.outcome_in(value, mapping)
        if result:
            return base.make_event(where, type="lead.closed", outcome=result, lead=lead, **common)
        return base.make_event(where, type="lead.stage_changed", lead=lead, **common)
    if prop == mapping["owner_property"]:
        lead["owner"] = value
        return base.make_event(where, type="lead.assigned", lead=lead, **common)
    if prop == mapping["reason_property"]:
        return base.make_event(where, type="lead.updated", reason=value, lead=lead, **common)
    if prop in mapping["updated_properties"]:
        field = mapping["updated_properties"][prop]
        if field == "customer":
            value = base.customer_id("hubspot", "company", value)
        lead[field] = base.amount(value) if field == "amount" else value
        return base.make_event(where, type="lead.updated", lead=lead, **common)
    return None


def _url(item: dict[str, Any], obj: str, object_id: str, app_url: str) -> str | None:
    portal = base.text(item.get("portalId"))
    type_id = {name: type_id for type_id, name in OBJECT_TYPES.items()}.get(obj)
    return f"{app_url}/contacts/{portal}/record/{type_id}/{object_id}" if portal and type_id else None


def _touch(item: dict[str, Any], where: str, mapping: Mapping[str, Any]) -> LeadEvent | None:
    """An engagement linked to a deal/contact: a touch on that lead."""
    if item.get("associationRemoved") in (True, "true"):
        return None
    ends = _association_ends(item)
    if ends is None:
        return None
    (from_type, from_id), (to_type, to_id) = ends
    if from_type in mapping["touches"] and to_type in mapping["lead_objects"]:
        channel, lead_object, lead_id = mapping["touches"][from_type], to_type, to_id
    elif to_type in mapping["touches"] and from_type in mapping["lead_objects"]:
        channel, lead_object, lead_id = mapping["touches"][to_type], from_type, from_id
    else:
        return None
    moment = base.from_unix(
        base.require(item.get("occurredAt"), f"{where}.occurredAt"), f"{where}.occurredAt", millis=True
    )
    source = base.text(item.get("sourceId")) or ""
    by = source.split(":", 1)[1] if source.startswith("userId:") else None
    return base.make_event(
        where,
        event_id=f"hubspot-{base.require(item.get('eventId'), f'{where}.eventId')}",
        type="lead.touched",
        occurred_at=moment,
        lead={"id": record_lead_id(CRM, lead_object, base.require(lead_id, f"{where}.toObjectId"))},
        touch={"channel": channel, "by": by},
    )


def _association_ends(item: dict[str, Any]) -> tuple[tuple[str, Any], tuple[str, Any]] | None:
    """``((from_type, from_id), (to_type, to_id))`` of an association event, when it says."""
    from_type = OBJECT_TYPES.get(base.text(item.get("fromObjectTypeId")) or "")
    to_type = OBJECT_TYPES.get(base.text(item.get("toObjectTypeId")) or "")
    if not (from_type and to_type):
        named = (base.text(item.get("associationType")) or "").lower().split("_to_")
        if len(named) != 2:
            return None
        from_type, to_type = (name.rstrip("s") for name in named)
        from_type = "meeting" if from_type == "meeting_event" else from_type
        to_type = "meeting" if to_type == "meeting_event" else to_type
    return (from_type, item.get("fromObjectId")), (to_type, item.get("toObjectId"))


def _merge_reasons(notes: list[tuple[int, dict[str, Any], LeadEvent]], mapping: Mapping[str, Any]) -> list[LeadEvent]:
    """Put a ``closed_lost_reason`` on the closure of the same deal in the same batch."""
    closures = {
        event.lead.id: position
        for position, (_, _, event) in enumerate(notes)
        if event.type == "lead.closed" and event.outcome == "lost"
    }
    events = [event for _, _, event in notes]
    merged: set[int] = set()
    for position, (_, item, event) in enumerate(notes):
        is_reason = event.type == "lead.updated" and base.text(item.get("propertyName")) == mapping["reason_property"]
        target = closures.get(event.lead.id)
        if is_reason and target is not None and event.reason:
            events[target] = events[target].model_copy(update={"reason": event.reason})
            merged.add(position)
    return [event for position, event in enumerate(events) if position not in merged]
