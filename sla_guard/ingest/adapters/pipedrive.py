"""Pipedrive webhooks (v2, and v1) → canonical lead events.

Webhooks v2 post ``{"meta": …, "data": …, "previous": …}`` where ``meta.id`` is a unique
event id (retries carry ``meta.attempt`` 2..4 and the same id) and ``previous`` holds only the
fields that changed. Webhooks v1 post ``{"event": "updated.deal", "meta": …, "current": …,
"previous": …}`` with the whole previous object and no event id. Authenticity is HTTP basic
auth, configured on the webhook in Pipedrive.

What each kind turns into:

- deals: create → ``lead.created``; status to won/lost → ``lead.closed`` (the reason is
  ``lost_reason``); back to open → ``lead.stage_changed`` (reopened); ``stage_id`` change →
  ``lead.stage_changed`` with ``previous_stage``; ``owner_id`` change → ``lead.assigned`` with
  ``previous_owner``; a value/title/pipeline change alone → ``lead.updated``; delete →
  ``lead.closed`` without an outcome, reason ``deleted``;
- leads (v2): create → ``lead.created``; owner change → ``lead.assigned``; archived →
  ``lead.closed`` reason ``archived``; unarchived → ``lead.stage_changed``; delete →
  ``lead.closed`` reason ``deleted``;
- activities: one of type call/email/meeting that becomes done, on a deal or a lead →
  ``lead.touched`` (channel = the activity type);
- notes, persons, organizations and the rest are acknowledged and ignored.

The event id is ``pipedrive-<meta.id>`` (v2) or ``pipedrive-v1-<object>-<id>-<timestamp>``
(v1); when one change means several events, each gets a suffix (``-assigned``, ``-stage``…).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sla_guard.core.events import LeadEvent
from sla_guard.core.record_ids import lead_id as record_lead_id
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import access, base
from sla_guard.ingest.adapters.base import AdapterResult, RawRequest

CRM = "pipedrive"
SETTINGS = access.setting_names(
    CRM,
    "USER",
    "PASSWORD",
    "APP_URL",
    "TOUCH_TYPES",
    "FIELD_SOURCE",
    "FIELD_PRIORITY",
    "FIELD_TEAM",
    "API_TOKEN",
    "API_URL",
)
"""Every setting of Pipedrive (the REST ones are read by the workers, not by this module)."""
(
    USER,
    PASSWORD,
    APP_URL,
    TOUCH_TYPES,
    FIELD_SOURCE,
    FIELD_PRIORITY,
    FIELD_TEAM,
    API_TOKEN,
    API_URL,
) = SETTINGS

DEFAULT_MAPPING: dict[str, Any] = {
    "won": frozenset({"won"}),
    "lost": frozenset({"lost"}),
    "touch_types": frozenset({"call", "email", "meeting"}),
    "fields": {},
}
"""Deal statuses that close a lead, activity types that are touches, and custom fields read
as lead fields (``{"source": "<custom field key>"}``)."""

_V1_ACTIONS = {"added": "create", "updated": "change", "deleted": "delete", "merged": "merge"}
_SUFFIX = {
    "lead.closed": "closed",
    "lead.stage_changed": "stage",
    "lead.assigned": "assigned",
    "lead.updated": "updated",
    "lead.created": "created",
    "lead.touched": "touched",
}


def mapping_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping with the optional overrides: ``SLA_GUARD_PIPEDRIVE_TOUCH_TYPES`` (activity
    types that are touches, default ``call,email,meeting``) and ``SLA_GUARD_PIPEDRIVE_FIELD_SOURCE``
    / ``_PRIORITY`` / ``_TEAM`` (custom field keys holding those lead fields)."""
    mapping = dict(DEFAULT_MAPPING)
    mapping["touch_types"] = access.word_set(settings, TOUCH_TYPES, DEFAULT_MAPPING["touch_types"])
    mapping["fields"] = access.field_settings(settings, source=FIELD_SOURCE, priority=FIELD_PRIORITY, team=FIELD_TEAM)
    return mapping


def enabled(settings: Mapping[str, Any]) -> bool:
    """Pipedrive is on when the webhook's basic-auth user and password are set."""
    return access.configured(settings, USER, PASSWORD)


# --- authenticity -------------------------------------------------------------------------


def verify(raw: RawRequest, settings: Mapping[str, Any], now: datetime) -> None:
    """Check the ``Authorization: Basic`` credentials (both compared in constant time).

    Pipedrive signs nothing and its timestamp is not authenticated, so ``now`` is unused.
    """
    user, password = access.secrets_to_verify(settings, "Pipedrive", USER, PASSWORD)
    given = base.header(raw, "Authorization") or ""
    scheme, _, encoded = given.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthorized("missing basic auth")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed basic auth") from None
    given_user, _, given_password = decoded.partition(":")
    user_ok = access.same_secret(given_user, user)
    password_ok = access.same_secret(given_password, password)
    if not (user_ok and password_ok):
        raise Unauthorized("wrong Pipedrive basic auth")


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """One Pipedrive notification, the same shape for v1 and v2."""

    entity: str
    action: str
    data: dict[str, Any]
    previous: dict[str, Any]
    event_id: str
    moment: datetime
    meta: dict[str, Any]

    def changed(self, key: str) -> bool:
        return key in self.previous and self.previous.get(key) != self.data.get(key)


def parse(raw: RawRequest, settings: Mapping[str, Any]) -> AdapterResult:
    """The lead events of one Pipedrive notification."""
    payload = base.parse_json(raw)
    if not isinstance(payload, dict):
        raise InvalidEvent("body", "expected a JSON object")
    change = _normalise(payload)
    kind = f"{change.entity}.{change.action}"
    handler = {"deal": _deal, "lead": _lead_entity, "activity": _activity}.get(change.entity)
    mapping = mapping_from_settings(settings)
    events = handler(change, mapping, base.text(settings.get(APP_URL))) if handler else []
    if len(events) > 1:
        events = [event.model_copy(update={"event_id": f"{event.event_id}-{_SUFFIX[event.type]}"}) for event in events]
    return AdapterResult(events=base.ordered(events), ignored=[] if events else [kind])


def _normalise(payload: dict[str, Any]) -> _Change:
    meta = payload.get("meta")
    if not isinstance(meta, dict):
        raise InvalidEvent("meta", "is missing")
    previous = base.group(payload, "previous")
    if "current" in payload or "object" in meta or str(meta.get("v", "")) == "1":
        event_name = base.text(payload.get("event")) or ""
        action = base.text(meta.get("action")) or event_name.partition(".")[0]
        entity = base.require(meta.get("object") or event_name.partition(".")[2], "meta.object")
        data = base.group(payload, "current")
        micro = base.text(meta.get("timestamp_micro"))
        if micro and micro.isdigit():
            moment = base.from_unix(int(micro) / 1_000_000, "meta.timestamp_micro")
        else:
            moment = base.from_unix(base.require(meta.get("timestamp"), "meta.timestamp"), "meta.timestamp")
        object_id = base.text(meta.get("id")) or base.text(data.get("id")) or base.text(previous.get("id"))
        stamp = micro if micro and micro.isdigit() else base.text(meta.get("timestamp"))
        event_id = f"pipedrive-v1-{entity}-{base.require(object_id, 'meta.id')}-{stamp}"
        return _Change(entity, _V1_ACTIONS.get(action, action), data, previous, event_id, moment, meta)
    entity = base.require(meta.get("entity"), "meta.entity")
    action = base.require(meta.get("action"), "meta.action")
    data = base.group(payload, "data")
    moment = base.from_iso(base.require(meta.get("timestamp"), "meta.timestamp"), "meta.timestamp")
    event_id = f"pipedrive-{base.require(meta.get('id'), 'meta.id')}"
    return _Change(entity, action, data, previous, event_id, moment, meta)


def _user(value: Any) -> str | None:
    """A user id, whether Pipedrive sends ``12`` or ``{"id": 12, "name": …}``."""
    return base.text(value.get("id") if isinstance(value, dict) else value)


def _owner(record: dict[str, Any]) -> str | None:
    return _user(record.get("owner_id")) or _user(record.get("user_id"))


def _custom(record: dict[str, Any]) -> dict[str, Any]:
    values = dict(record)
    custom = record.get("custom_fields")
    if isinstance(custom, dict):
        for key, value in custom.items():
            values[key] = value.get("value") if isinstance(value, dict) else value
    return values


def _record(change: _Change) -> dict[str, Any]:
    """The entity's fields: the new ones, or the last known ones of a deleted entity."""
    if change.data:
        return change.data
    return change.previous


_PAGES = {"deal": "deal", "lead": "leads/inbox"}
"""Where Pipedrive's web app shows a deal, and a lead of the Leads inbox."""


def _lead(change: _Change, entity: str, mapping: Mapping[str, Any], app_url: str | None) -> dict[str, Any]:
    """The lead fields of a deal or of a lead of the Leads inbox, which names its source and its
    organization its own way (and has no pipeline)."""
    record = _record(change)
    native_id = base.require(record.get("id") or change.meta.get("entity_id"), "data.id")
    if entity == "deal":
        own = {"pipeline": base.text(record.get("pipeline_id")), "source": base.text(record.get("origin"))}
        organization = record.get("org_id")
    else:
        own = {"source": base.text(record.get("source_name")) or base.text(record.get("origin"))}
        organization = record.get("organization_id") or record.get("org_id")
    return {
        "id": record_lead_id(CRM, entity, native_id),
        "name": base.text(record.get("title")),
        "owner": _owner(record),
        "amount": base.amount(record.get("value")),
        "customer": base.customer_id("pipedrive", "org", organization),
        "url": f"{app_url.rstrip('/')}/{_PAGES[entity]}/{native_id}" if app_url else None,
        **own,
        **base.lead_fields(mapping["fields"], _custom(record)),
    }


def _deal(change: _Change, mapping: Mapping[str, Any], app_url: str | None) -> list[LeadEvent]:
    record = _record(change)
    lead = _lead(change, "deal", mapping, app_url)
    staged = {**lead, "stage": base.text(record.get("stage_id"))}
    common = {"event_id": change.event_id, "occurred_at": change.moment}
    if change.action == "create":
        return [base.make_event("data", type="lead.created", lead=staged, **common)]
    if change.action == "delete":
        return [base.make_event("data", type="lead.closed", reason="deleted", lead=staged, **common)]
    if change.action != "change":
        return []
    events = []
    status, before = base.text(change.data.get("status")), base.text(change.previous.get("status"))
    stage_moved = change.changed("stage_id")
    previous_stage = base.text(change.previous.get("stage_id")) if stage_moved else None
    closing = change.changed("status") and (base.outcome_in(status, mapping) or status == "deleted")
    if closing:
        result = base.outcome_in(status, mapping)
        events.append(
            base.make_event(
                "data",
                type="lead.closed",
                outcome=result,
                lead=staged,
                previous_stage=previous_stage,
                reason=base.text(change.data.get("lost_reason"))
                if result == "lost"
                else ("deleted" if status == "deleted" else None),
                **common,
            )
        )
    elif stage_moved or (change.changed("status") and status == "open" and before):
        events.append(
            base.make_event("data", type="lead.stage_changed", lead=staged, previous_stage=previous_stage, **common)
        )
    if change.changed("owner_id") or change.changed("user_id"):
        previous_owner = _user(change.previous.get("owner_id")) or _user(change.previous.get("user_id"))
        events.append(base.make_event("data", type="lead.assigned", lead=lead, previous_owner=previous_owner, **common))
    if not events and change.changed("lost_reason") and base.outcome_in(status, mapping) == "lost":
        events.append(
            base.make_event(
                "data", type="lead.updated", lead=lead, reason=base.text(change.data.get("lost_reason")), **common
            )
        )
    if not events and any(change.changed(key) for key in ("value", "title", "pipeline_id")):
        events.append(base.make_event("data", type="lead.updated", lead=lead, **common))
    return events


def _lead_entity(change: _Change, mapping: Mapping[str, Any], app_url: str | None) -> list[LeadEvent]:
    """Pipedrive's Leads inbox (webhooks v2): leads have no stages, only an owner and archiving."""
    lead = _lead(change, "lead", mapping, app_url)
    common = {"event_id": change.event_id, "occurred_at": change.moment, "lead": lead}
    if change.action == "create":
        return [base.make_event("data", type="lead.created", **common)]
    if change.action == "delete":
        return [base.make_event("data", type="lead.closed", reason="deleted", **common)]
    if change.action != "change":
        return []
    if change.changed("is_archived"):
        if change.data.get("is_archived"):
            return [base.make_event("data", type="lead.closed", reason="archived", **common)]
        return [base.make_event("data", type="lead.stage_changed", **common)]
    if change.changed("owner_id"):
        return [
            base.make_event(
                "data", type="lead.assigned", previous_owner=_user(change.previous.get("owner_id")), **common
            )
        ]
    if change.changed("title") or change.changed("value"):
        return [base.make_event("data", type="lead.updated", **common)]
    return []


def _activity(change: _Change, mapping: Mapping[str, Any], app_url: str | None) -> list[LeadEvent]:
    """A call, e-mail or meeting marked done on a deal or lead is a touch."""
    record = change.data
    kind = base.text(record.get("type"))
    done = record.get("done") in (True, 1, "1", "true")
    newly_done = change.action == "create" or (change.action == "change" and change.changed("done"))
    if not (done and newly_done and kind in mapping["touch_types"]):
        return []
    deal_id, pipedrive_lead_id = base.text(record.get("deal_id")), base.text(record.get("lead_id"))
    if deal_id is None and pipedrive_lead_id is None:
        return []
    lead_id = record_lead_id(CRM, "deal", deal_id) if deal_id else record_lead_id(CRM, "lead", pipedrive_lead_id)
    by = _owner(record) or base.text(change.meta.get("user_id"))
    return [
        base.make_event(
            "data",
            event_id=change.event_id,
            type="lead.touched",
            occurred_at=change.moment,
            lead={"id": lead_id},
            touch={"channel": kind, "by": by, "task_id": base.text(record.get("id"))},
        )
    ]
