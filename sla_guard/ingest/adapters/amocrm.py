"""amoCRM / Kommo webhooks → canonical lead events.

amoCRM posts ``application/x-www-form-urlencoded`` bodies with PHP-style bracket keys:
``leads[status][0][status_id]=143&account[id]=30307558``. One request may carry several
entities, actions and indexes; every one is read. There is no signature: the secret token is
the last segment of the webhook path, and the account id in the body must be ours.

What each kind turns into (see ``docs/crm/amocrm.md``):

- ``leads[add]`` → ``lead.created``; ``leads[update]`` → ``lead.updated`` (name, amount,
  owner, tags; the stage moves only through ``leads[status]`` so that a stage change is never
  hidden inside an update);
- ``leads[status]`` → ``lead.closed`` for the won/lost statuses (142/143), else
  ``lead.stage_changed`` with ``previous_stage`` from ``old_status_id``;
- ``leads[responsible]`` → ``lead.assigned``; ``leads[delete]`` → ``lead.closed`` without an
  outcome, reason ``deleted``; ``leads[restore]`` → ``lead.stage_changed`` (the lead reopens);
- ``leads[note]`` with a call (note types 10 incoming, 11 outgoing) or an outgoing SMS (103)
  → ``lead.touched``; a missed incoming call (duration 0) and common notes (4) are not touches;
- ``task[add|update]`` completed on a lead → ``lead.touched`` channel ``task``;
- ``message[add]`` outgoing (written by a manager) → ``lead.touched`` channel ``message``;
  an incoming message is the client talking, not an answer, so it is not a touch.

Times: unix seconds (``created_at``, ``updated_at``) are preferred. When only text times are
sent, notes carry the account's local time (``SLA_GUARD_AMOCRM_TIMEZONE``, default
Europe/Moscow) while tasks carry UTC, as observed in amoCRM's traffic.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from sla_guard.core.events import LeadEvent
from sla_guard.core.record_ids import lead_id as record_lead_id
from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters.base import (
    AdapterResult,
    RawRequest,
    amount,
    customer_id,
    from_iso,
    from_unix,
    indexed,
    lead_fields,
    make_event,
    ordered,
    parse_form,
    require,
    text,
    unique,
    word_set,
    zone,
)

CRM = "amocrm"
TOKEN = "SLA_GUARD_AMOCRM_TOKEN"
ACCOUNT_ID = "SLA_GUARD_AMOCRM_ACCOUNT_ID"
TIMEZONE = "SLA_GUARD_AMOCRM_TIMEZONE"
WON_STATUSES = "SLA_GUARD_AMOCRM_WON_STATUSES"
LOST_STATUSES = "SLA_GUARD_AMOCRM_LOST_STATUSES"
FIELD_SOURCE = "SLA_GUARD_AMOCRM_FIELD_SOURCE"
FIELD_PRIORITY = "SLA_GUARD_AMOCRM_FIELD_PRIORITY"
FIELD_TEAM = "SLA_GUARD_AMOCRM_FIELD_TEAM"
BASE_URL = "SLA_GUARD_AMOCRM_BASE_URL"
ACCESS_TOKEN = "SLA_GUARD_AMOCRM_ACCESS_TOKEN"
SUBDOMAIN = "SLA_GUARD_AMOCRM_SUBDOMAIN"
_AMO_DOMAINS = ("amocrm.ru", "amocrm.com", "kommo.com")
SETTINGS = (
    TOKEN,
    ACCOUNT_ID,
    TIMEZONE,
    WON_STATUSES,
    LOST_STATUSES,
    FIELD_SOURCE,
    FIELD_PRIORITY,
    FIELD_TEAM,
    BASE_URL,
    ACCESS_TOKEN,
    SUBDOMAIN,
)
"""Every setting of amoCRM (the REST ones are read by the workers, not by this module)."""

LEAD_ELEMENT = "2"
"""amoCRM's element type of a lead (1 contact, 3 company, 12 customer)."""

DEFAULT_MAPPING: dict[str, Any] = {
    "won": frozenset({"142"}),
    "lost": frozenset({"143"}),
    "touch_notes": {"10": "call", "11": "call", "103": "sms"},
    "incoming_notes": frozenset({"10"}),
    "fields": {},
}
"""How amoCRM values map to sla-guard's: won/lost status ids, which note types are touches
(note type → touch channel), which of them are incoming, and custom fields read as lead fields
(``{"source": "<field id or name>"}``)."""


def mapping_from_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The mapping, with the optional overrides of the settings.

    ``SLA_GUARD_AMOCRM_WON_STATUSES`` / ``..._LOST_STATUSES``: comma-separated status ids;
    ``SLA_GUARD_AMOCRM_FIELD_SOURCE`` / ``_PRIORITY`` / ``_TEAM``: the custom field (id or name)
    holding the lead's source, priority or team.
    """
    mapping = dict(DEFAULT_MAPPING)
    mapping["won"] = word_set(settings, WON_STATUSES, DEFAULT_MAPPING["won"])
    mapping["lost"] = word_set(settings, LOST_STATUSES, DEFAULT_MAPPING["lost"])
    fields = {"source": FIELD_SOURCE, "priority": FIELD_PRIORITY, "team": FIELD_TEAM}
    mapping["fields"] = {ours: text(settings.get(key)) for ours, key in fields.items() if text(settings.get(key))}
    return mapping


def outcome(status_id: str | None, mapping: Mapping[str, Any] = DEFAULT_MAPPING) -> str | None:
    """``"won"``, ``"lost"`` or ``None`` (still open) for an amoCRM status id."""
    if status_id in mapping["won"]:
        return "won"
    if status_id in mapping["lost"]:
        return "lost"
    return None


def enabled(settings: Mapping[str, Any]) -> bool:
    """amoCRM is on when the path token and the account id are set."""
    return bool(text(settings.get(TOKEN)) and text(settings.get(ACCOUNT_ID)))


# --- authenticity -------------------------------------------------------------------------


def verify_token(raw: RawRequest, settings: Mapping[str, Any]) -> None:
    """Check the path token (last path segment) alone: possible before the body is decoded."""
    expected = text(settings.get(TOKEN))
    if not expected:
        raise Unauthorized("amoCRM is not configured")
    token = unquote(raw.path.rstrip("/").rsplit("/", 1)[-1])
    if not hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode()):
        raise Unauthorized("wrong amoCRM webhook token")


def verify(raw: RawRequest, settings: Mapping[str, Any], now: datetime) -> None:
    """Check the path token (last path segment) and that the body names our account.

    amoCRM signs nothing and sends no timestamp, so ``now`` is unused. Every account id in the
    body (``account[id]`` and each entity's ``account_id``) must be ours; a body without
    ``account[id]`` is accepted when its ``account[subdomain]`` is ours (:func:`account_subdomain`).
    """
    account = text(settings.get(ACCOUNT_ID))
    verify_token(raw, settings)
    if not account:
        raise Unauthorized("amoCRM is not configured")
    try:
        form = parse_form(raw)
    except InvalidEvent:
        raise Unauthorized("the body does not name an amoCRM account") from None
    account_group = form.get("account") if isinstance(form.get("account"), dict) else {}
    said = text(account_group.get("id"))
    if said is None:
        # Some hooks name the account by subdomain only. Refusing them would make amoCRM switch
        # the hook off after 100 failures in 2 hours, so the subdomain is checked instead.
        subdomain, ours = (text(account_group.get("subdomain")) or "").lower(), account_subdomain(settings)
        if not subdomain or not ours:
            raise Unauthorized("the body does not name an amoCRM account")
        if not hmac.compare_digest(subdomain.encode(), ours.encode()):
            raise Unauthorized("the webhook comes from another amoCRM account")
    elif not hmac.compare_digest(said.encode(), account.encode()):
        raise Unauthorized("the webhook comes from another amoCRM account")
    for item in _all_items(form):
        other = text(item.get("account_id"))
        if other is not None and not hmac.compare_digest(other.encode(), account.encode()):
            raise Unauthorized("an entity in the webhook belongs to another amoCRM account")


def account_subdomain(settings: Mapping[str, Any]) -> str | None:
    """The account's subdomain: ``SLA_GUARD_AMOCRM_SUBDOMAIN``, else the first label of
    ``SLA_GUARD_AMOCRM_BASE_URL`` (``https://acme.amocrm.ru`` → ``acme``)."""
    named = text(settings.get(SUBDOMAIN))
    if named:
        return named.lower()
    host = (urlsplit(text(settings.get(BASE_URL)) or "").hostname or "").lower()
    label, _, rest = host.partition(".")
    return label if rest in _AMO_DOMAINS and label else None


def _all_items(form: dict[str, Any]):
    for entity, actions in form.items():
        if entity == "account" or not isinstance(actions, dict):
            continue
        for items in actions.values():
            for _, item in indexed(items):
                if isinstance(item, dict):
                    yield item
                    if isinstance(item.get("note"), dict):
                        yield item["note"]


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    mapping: Mapping[str, Any]
    zone: ZoneInfo
    base_url: str | None
    received_at: datetime | None


Handler = Callable[[str, str, dict[str, Any], str, _Context], "LeadEvent | None"]


def parse(raw: RawRequest, settings: Mapping[str, Any], *, received_at: datetime | None = None) -> AdapterResult:
    """Every lead event the request carries, oldest first.

    ``received_at`` (optional) dates the rare kinds amoCRM sends without a time (a deleted
    lead); without it such items are acknowledged in ``ignored``.
    """
    form = parse_form(raw)
    account = form.get("account") if isinstance(form.get("account"), dict) else {}
    links = account.get("_links") if isinstance(account.get("_links"), dict) else {}
    context = _Context(
        mapping=mapping_from_settings(settings),
        zone=zone(settings, TIMEZONE, "Europe/Moscow"),
        base_url=(text(links.get("self")) or "").rstrip("/") or None,
        received_at=received_at,
    )
    events: list[LeadEvent] = []
    ignored: list[str] = []
    for entity, actions in form.items():
        if entity == "account":
            continue
        if not isinstance(actions, dict):
            ignored.append(entity)
            continue
        for action, items in actions.items():
            if not isinstance(items, dict):
                raise InvalidEvent(f"{entity}[{action}]", "expected a list of items")
            handler = _HANDLERS.get((entity, action))
            for index, item in indexed(items):
                where = f"{entity}[{action}][{index}]"
                if not isinstance(item, dict):
                    raise InvalidEvent(where, "expected an item with fields")
                event = handler(entity, action, item, where, context) if handler else None
                if event is None:
                    ignored.append(f"{entity}.{action}")
                else:
                    events.append(event)
    return AdapterResult(events=ordered(unique(events)), ignored=ignored)


def _moment(item: dict[str, Any], where: str, keys: tuple[str, ...], text_zone: ZoneInfo | None) -> datetime | None:
    """The first of ``keys`` present: unix seconds, or a text time in ``text_zone``."""
    for key in keys:
        value = text(item.get(key))
        if value is None:
            continue
        if value.isdigit():
            return from_unix(value, f"{where}[{key}]")
        return from_iso(value.replace(" ", "T", 1), f"{where}[{key}]", tz=text_zone or UTC)
    return None


def _stamp(item: dict[str, Any], moment: datetime) -> str:
    return text(item.get("updated_at")) or text(item.get("last_modified")) or str(int(moment.timestamp()))


def _lead(item: dict[str, Any], where: str, context: _Context, *, stage: bool) -> dict[str, Any]:
    lead_id = require(item.get("id"), f"{where}[id]")
    custom = {}
    for _, field in indexed(item.get("custom_fields")):
        if isinstance(field, dict):
            values = [text(value.get("value")) for _, value in indexed(field.get("values")) if isinstance(value, dict)]
            first = next((value for value in values if value), None)
            for name in (text(field.get("id")), text(field.get("name")), text(field.get("code"))):
                if name and first:
                    custom[name] = first
    tags = [
        text(tag.get("name")) for _, tag in indexed(item.get("tags")) if isinstance(tag, dict) and text(tag.get("name"))
    ]
    return {
        "id": _lead_id(lead_id),
        "name": text(item.get("name")),
        "stage": text(item.get("status_id")) if stage else None,
        "pipeline": text(item.get("pipeline_id")),
        "owner": text(item.get("responsible_user_id")),
        "amount": amount(item.get("price")),
        "url": f"{context.base_url}/leads/detail/{lead_id}" if context.base_url else None,
        "tags": tags or None,
        "customer": customer_id("amocrm", "company", item.get("linked_company_id")),
        **lead_fields(context.mapping.get("fields", {}), custom),
    }


def _lead_id(native: str) -> str:
    """sla-guard's id of an amoCRM lead (``amocrm:lead:<id>``)."""
    return record_lead_id(CRM, "lead", native)


_LEAD_TIMES = ("updated_at", "last_modified", "created_at", "date_create")


def _lead_added(entity, action, item, where, context):
    moment = _moment(item, where, ("created_at", "date_create", "updated_at", "last_modified"), context.zone)
    if moment is None:
        raise InvalidEvent(f"{where}[created_at]", "is missing")
    lead = _lead(item, where, context, stage=True)
    return make_event(
        where,
        event_id=f"amocrm-leads-add-{text(item.get('id'))}-{_stamp(item, moment)}",
        type="lead.created",
        occurred_at=moment,
        lead=lead,
    )


def _required_moment(item, where, context):
    moment = _moment(item, where, _LEAD_TIMES, context.zone)
    if moment is None:
        raise InvalidEvent(f"{where}[updated_at]", "is missing")
    return moment


def _lead_updated(entity, action, item, where, context):
    moment = _required_moment(item, where, context)
    lead = _lead(item, where, context, stage=False)
    return make_event(
        where,
        event_id=f"amocrm-leads-update-{text(item.get('id'))}-{_stamp(item, moment)}",
        type="lead.updated",
        occurred_at=moment,
        lead=lead,
    )


def _lead_status(entity, action, item, where, context):
    moment = _required_moment(item, where, context)
    lead = _lead(item, where, context, stage=True)
    status = require(item.get("status_id"), f"{where}[status_id]")
    result = outcome(status, context.mapping)
    common = dict(
        event_id=f"amocrm-leads-status-{text(item.get('id'))}-{_stamp(item, moment)}",
        occurred_at=moment,
        lead=lead,
        previous_stage=text(item.get("old_status_id")),
    )
    if result:
        return make_event(where, type="lead.closed", outcome=result, **common)
    return make_event(where, type="lead.stage_changed", **common)


def _lead_responsible(entity, action, item, where, context):
    moment = _required_moment(item, where, context)
    lead = _lead(item, where, context, stage=False)
    require(item.get("responsible_user_id"), f"{where}[responsible_user_id]")
    return make_event(
        where,
        event_id=f"amocrm-leads-responsible-{text(item.get('id'))}-{_stamp(item, moment)}",
        type="lead.assigned",
        occurred_at=moment,
        lead=lead,
        previous_owner=text(item.get("old_responsible_user_id")),
    )


def _lead_deleted(entity, action, item, where, context):
    moment = _moment(item, where, _LEAD_TIMES, context.zone) or context.received_at
    if moment is None:
        return None
    lead_id = require(item.get("id"), f"{where}[id]")
    return make_event(
        where,
        event_id=f"amocrm-leads-delete-{lead_id}-{int(moment.timestamp())}",
        type="lead.closed",
        occurred_at=moment,
        reason="deleted",
        lead={"id": _lead_id(lead_id), "stage": text(item.get("status_id")), "pipeline": text(item.get("pipeline_id"))},
    )


def _lead_restored(entity, action, item, where, context):
    moment = _moment(item, where, _LEAD_TIMES, context.zone) or context.received_at
    if moment is None:
        return None
    lead = _lead(item, where, context, stage=True)
    return make_event(
        where,
        event_id=f"amocrm-leads-restore-{text(item.get('id'))}-{int(moment.timestamp())}",
        type="lead.stage_changed",
        occurred_at=moment,
        lead=lead,
    )


def _call_seconds(note: dict[str, Any]) -> int | None:
    """The call's duration from the note text (JSON with DURATION), when it says."""
    params = note.get("params") if isinstance(note.get("params"), dict) else None
    if params is None:
        try:
            params = json.loads(note.get("text") or "")
        except (TypeError, ValueError):
            return None
    if not isinstance(params, dict):
        return None
    value = params.get("DURATION", params.get("duration"))
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _lead_note(entity, action, item, where, context):
    note = item.get("note") if isinstance(item.get("note"), dict) else item
    where = f"{where}[note]" if note is not item else where
    kind = text(note.get("note_type"))
    channel = context.mapping["touch_notes"].get(kind)
    if channel is None or text(note.get("element_type")) not in (None, LEAD_ELEMENT):
        return None
    seconds = _call_seconds(note) if channel == "call" else None
    missed = seconds == 0
    if missed and kind in context.mapping["incoming_notes"]:
        return None  # the client called and nobody answered: still waiting for a touch
    moment = _moment(note, where, ("created_at", "date_create", "updated_at", "timestamp_x"), context.zone)
    if moment is None:
        raise InvalidEvent(f"{where}[created_at]", "is missing")
    note_id = require(note.get("id"), f"{where}[id]")
    lead_id = require(note.get("element_id"), f"{where}[element_id]")
    by = text(note.get("main_user_id")) or text(note.get("created_by"))
    return make_event(
        where,
        event_id=f"amocrm-leads-note-{note_id}",
        type="lead.touched",
        occurred_at=moment,
        lead={"id": _lead_id(lead_id)},
        touch={"channel": channel, "by": by, "outcome": "no_answer" if missed else None},
    )


def _task(entity, action, item, where, context):
    if text(item.get("element_type")) != LEAD_ELEMENT or text(item.get("status")) != "1":
        return None
    if text(item.get("action_close")) not in (None, "1"):
        return None
    task_id = require(item.get("id"), f"{where}[id]")
    lead_id = require(item.get("element_id"), f"{where}[element_id]")
    moment = _moment(item, where, ("updated_at", "last_modified"), UTC)
    if moment is None:
        raise InvalidEvent(f"{where}[updated_at]", "is missing")
    by = text(item.get("responsible_user_id")) or text(item.get("created_user_id"))
    return make_event(
        where,
        event_id=f"amocrm-task-{action}-{task_id}-{_stamp(item, moment)}",
        type="lead.touched",
        occurred_at=moment,
        lead={"id": _lead_id(lead_id)},
        touch={"channel": "task", "by": by, "task_id": task_id},
    )


def _message(entity, action, item, where, context):
    if text(item.get("type")) != "outgoing":
        return None  # the client wrote: that starts a conversation, it does not answer one
    author = item.get("author") if isinstance(item.get("author"), dict) else {}
    if text(author.get("type")) == "bot":
        return None
    if text(item.get("element_type")) == LEAD_ELEMENT:
        lead_id = text(item.get("element_id"))
    elif text(item.get("entity_type")) == "lead":
        lead_id = text(item.get("entity_id"))
    else:
        return None
    if lead_id is None:
        return None
    message_id = require(item.get("id"), f"{where}[id]")
    moment = _moment(item, where, ("created_at",), context.zone)
    if moment is None:
        raise InvalidEvent(f"{where}[created_at]", "is missing")
    by = text(author.get("id"))
    return make_event(
        where,
        event_id=f"amocrm-message-{message_id}",
        type="lead.touched",
        occurred_at=moment,
        lead={"id": _lead_id(lead_id)},
        touch={"channel": "message", "by": by if by and by.isdigit() else None},
    )


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("leads", "add"): _lead_added,
    ("leads", "update"): _lead_updated,
    ("leads", "status"): _lead_status,
    ("leads", "responsible"): _lead_responsible,
    ("leads", "delete"): _lead_deleted,
    ("leads", "restore"): _lead_restored,
    ("leads", "note"): _lead_note,
    ("task", "add"): _task,
    ("task", "update"): _task,
    ("message", "add"): _message,
}
