"""What each kind of amoCRM webhook item turns into: one canonical lead event, or nothing.

:data:`HANDLERS` maps an item's ``(entity, action)`` (``leads[status]`` is ``("leads",
"status")``) to the function reading it; :mod:`sla_guard.ingest.adapters.amocrm` parses the
request and hands each item to its handler with the request's :class:`Context`. The kinds and
what they mean are described there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sla_guard.core.events import LeadEvent
from sla_guard.core.record_ids import lead_id as record_lead_id
from sla_guard.exceptions import InvalidEvent
from sla_guard.ingest.adapters import base

CRM = "amocrm"

LEAD_ELEMENT = "2"
"""amoCRM's element type of a lead (1 contact, 3 company, 12 customer)."""


@dataclass(frozen=True)
class Context:
    """What every item of one request is read with."""

    mapping: Mapping[str, Any]
    """The account's mapping (``amocrm.mapping_from_settings``)."""
    zone: ZoneInfo
    """The zone of the text times notes carry."""
    base_url: str | None
    """The account's address, for links to its leads."""
    received_at: datetime | None
    """When the request came, for the kinds sent without a time."""


Handler = Callable[[str, str, dict[str, Any], str, Context], "LeadEvent | None"]

_LEAD_TIMES = ("updated_at", "last_modified", "created_at", "date_create")
_CREATED_TIMES = ("created_at", "date_create", "updated_at", "last_modified")


def lead_id(native: str) -> str:
    """sla-guard's id of an amoCRM lead (``amocrm:lead:<id>``)."""
    return record_lead_id(CRM, "lead", native)


def _moment(item: dict[str, Any], where: str, keys: tuple[str, ...], text_zone: ZoneInfo | None) -> datetime | None:
    """The first of ``keys`` present: unix seconds, or a text time in ``text_zone``."""
    for key in keys:
        value = base.text(item.get(key))
        if value is None:
            continue
        if value.isdigit():
            return base.from_unix(value, f"{where}[{key}]")
        return base.from_iso(value.replace(" ", "T", 1), f"{where}[{key}]", tz=text_zone or UTC)
    return None


def _required_moment(item: dict[str, Any], where: str, keys: tuple[str, ...], text_zone: ZoneInfo | None) -> datetime:
    """:func:`_moment`, which must be there (the first of ``keys`` is named when it is not)."""
    moment = _moment(item, where, keys, text_zone)
    if moment is None:
        raise InvalidEvent(f"{where}[{keys[0]}]", "is missing")
    return moment


def _stamp(item: dict[str, Any], moment: datetime) -> str:
    return base.text(item.get("updated_at")) or base.text(item.get("last_modified")) or str(int(moment.timestamp()))


def _lead(item: dict[str, Any], where: str, context: Context, *, stage: bool) -> dict[str, Any]:
    native = base.require(item.get("id"), f"{where}[id]")
    custom = {}
    for _, field in base.indexed(item.get("custom_fields")):
        if isinstance(field, dict):
            values = [
                base.text(value.get("value"))
                for _, value in base.indexed(field.get("values"))
                if isinstance(value, dict)
            ]
            first = next((value for value in values if value), None)
            for name in (base.text(field.get("id")), base.text(field.get("name")), base.text(field.get("code"))):
                if name and first:
                    custom[name] = first
    tags = [
        base.text(tag.get("name"))
        for _, tag in base.indexed(item.get("tags"))
        if isinstance(tag, dict) and base.text(tag.get("name"))
    ]
    return {
        "id": lead_id(native),
        "name": base.text(item.get("name")),
        "stage": base.text(item.get("status_id")) if stage else None,
        "pipeline": base.text(item.get("pipeline_id")),
        "owner": base.text(item.get("responsible_user_id")),
        "amount": base.amount(item.get("price")),
        "url": f"{context.base_url}/leads/detail/{native}" if context.base_url else None,
        "tags": tags or None,
        "customer": base.customer_id("amocrm", "company", item.get("linked_company_id")),
        **base.lead_fields(context.mapping.get("fields", {}), custom),
    }


def _lead_event(
    kind: str, type: str, item, where, moment: datetime, lead: dict[str, Any], stamp: str | None = None, **facts
) -> LeadEvent:
    """The event of a ``leads[<kind>]`` item that carries the lead's fields (``lead``); ``stamp``
    tells this change of the lead from its others (by default :func:`_stamp`)."""
    return base.make_event(
        where,
        event_id=f"amocrm-leads-{kind}-{base.text(item.get('id'))}-{stamp or _stamp(item, moment)}",
        type=type,
        occurred_at=moment,
        lead=lead,
        **facts,
    )


def _touch(where: str, event_id: str, moment: datetime, native_lead_id: str, **touch) -> LeadEvent:
    """A ``lead.touched`` event of an amoCRM lead."""
    return base.make_event(
        where,
        event_id=event_id,
        type="lead.touched",
        occurred_at=moment,
        lead={"id": lead_id(native_lead_id)},
        touch=touch,
    )


def _lead_added(entity, action, item, where, context):
    moment = _required_moment(item, where, _CREATED_TIMES, context.zone)
    return _lead_event("add", "lead.created", item, where, moment, _lead(item, where, context, stage=True))


def _lead_updated(entity, action, item, where, context):
    moment = _required_moment(item, where, _LEAD_TIMES, context.zone)
    return _lead_event("update", "lead.updated", item, where, moment, _lead(item, where, context, stage=False))


def _lead_status(entity, action, item, where, context):
    moment = _required_moment(item, where, _LEAD_TIMES, context.zone)
    lead = _lead(item, where, context, stage=True)
    result = base.outcome_in(base.require(item.get("status_id"), f"{where}[status_id]"), context.mapping)
    previous = base.text(item.get("old_status_id"))
    if result:
        return _lead_event("status", "lead.closed", item, where, moment, lead, outcome=result, previous_stage=previous)
    return _lead_event("status", "lead.stage_changed", item, where, moment, lead, previous_stage=previous)


def _lead_responsible(entity, action, item, where, context):
    moment = _required_moment(item, where, _LEAD_TIMES, context.zone)
    lead = _lead(item, where, context, stage=False)
    base.require(item.get("responsible_user_id"), f"{where}[responsible_user_id]")
    previous = base.text(item.get("old_responsible_user_id"))
    return _lead_event("responsible", "lead.assigned", item, where, moment, lead, previous_owner=previous)


def _untimed(kind: str, type: str, lead: Callable[[dict, str, Context], dict[str, Any]], **facts) -> Handler:
    """The handler of a kind amoCRM may send without a time (dated by the request's arrival,
    or ignored when that is not known either)."""

    def handle(entity, action, item, where, context):
        moment = _moment(item, where, _LEAD_TIMES, context.zone) or context.received_at
        if moment is None:
            return None
        fields = lead(item, where, context)
        return _lead_event(kind, type, item, where, moment, fields, stamp=str(int(moment.timestamp())), **facts)

    return handle


def _deleted_lead(item, where, context) -> dict[str, Any]:
    native = base.require(item.get("id"), f"{where}[id]")
    return {
        "id": lead_id(native),
        "stage": base.text(item.get("status_id")),
        "pipeline": base.text(item.get("pipeline_id")),
    }


def _restored_lead(item, where, context) -> dict[str, Any]:
    return _lead(item, where, context, stage=True)


_lead_deleted = _untimed("delete", "lead.closed", _deleted_lead, reason="deleted")
_lead_restored = _untimed("restore", "lead.stage_changed", _restored_lead)


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
    kind = base.text(note.get("note_type"))
    channel = context.mapping["touch_notes"].get(kind)
    if channel is None or base.text(note.get("element_type")) not in (None, LEAD_ELEMENT):
        return None
    seconds = _call_seconds(note) if channel == "call" else None
    missed = seconds == 0
    if missed and kind in context.mapping["incoming_notes"]:
        return None  # the client called and nobody answered: still waiting for a touch
    moment = _required_moment(note, where, ("created_at", "date_create", "updated_at", "timestamp_x"), context.zone)
    note_id = base.require(note.get("id"), f"{where}[id]")
    native = base.require(note.get("element_id"), f"{where}[element_id]")
    by = base.text(note.get("main_user_id")) or base.text(note.get("created_by"))
    outcome = "no_answer" if missed else None
    return _touch(where, f"amocrm-leads-note-{note_id}", moment, native, channel=channel, by=by, outcome=outcome)


def _task(entity, action, item, where, context):
    if base.text(item.get("element_type")) != LEAD_ELEMENT or base.text(item.get("status")) != "1":
        return None
    if base.text(item.get("action_close")) not in (None, "1"):
        return None
    task_id = base.require(item.get("id"), f"{where}[id]")
    native = base.require(item.get("element_id"), f"{where}[element_id]")
    moment = _required_moment(item, where, ("updated_at", "last_modified"), UTC)
    by = base.text(item.get("responsible_user_id")) or base.text(item.get("created_user_id"))
    event_id = f"amocrm-task-{action}-{task_id}-{_stamp(item, moment)}"
    return _touch(where, event_id, moment, native, channel="task", by=by, task_id=task_id)


def _message(entity, action, item, where, context):
    if base.text(item.get("type")) != "outgoing":
        return None  # the client wrote: that starts a conversation, it does not answer one
    author = item.get("author") if isinstance(item.get("author"), dict) else {}
    if base.text(author.get("type")) == "bot":
        return None
    if base.text(item.get("element_type")) == LEAD_ELEMENT:
        native = base.text(item.get("element_id"))
    elif base.text(item.get("entity_type")) == "lead":
        native = base.text(item.get("entity_id"))
    else:
        return None
    if native is None:
        return None
    message_id = base.require(item.get("id"), f"{where}[id]")
    moment = _required_moment(item, where, ("created_at",), context.zone)
    by = base.text(author.get("id"))
    return _touch(
        where, f"amocrm-message-{message_id}", moment, native, channel="message", by=by if by and by.isdigit() else None
    )


HANDLERS: dict[tuple[str, str], Handler] = {
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
"""The reader of each ``(entity, action)`` sla-guard uses; other kinds are acknowledged as ignored."""
