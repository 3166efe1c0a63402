"""The ``crm`` channel: an alert becomes a task for the recipient in the CRM, through its REST API.

The task clients of :mod:`sla_guard.outbox.crm_tasks` do the talking; this module maps an alert onto a
:class:`~sla_guard.outbox.crm_tasks.TaskRequest` and the clients' :class:`TaskError` onto
:class:`DeliveryError`. Each alert's task carries the key ``sla-guard-alert-<id>``: a retry
first looks the task up by that key, so a crash after the CRM created it never makes a second.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import requests

from sla_guard.core.record_ids import crm_record
from sla_guard.core.rules.notify_spec import CrmChannel
from sla_guard.exceptions import DeliveryError, TaskError
from sla_guard.outbox.crm_tasks import TaskRequest, client_for

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DEFAULT_KINDS = {"amocrm": "lead", "bitrix24": "lead", "hubspot": "deal"}
"""What a lead id names in each CRM unless the channel says (Pipedrive: by the id's shape)."""


def crm_target(channel: CrmChannel, lead_id: str) -> tuple[str, str]:
    """``(the CRM's record id, its kind)`` an alert about ``lead_id`` attaches its task to.

    A lead id naming a CRM record (``bitrix24:deal:5``) says both, and must name the channel's
    CRM; a bare id (the generic webhook's) is taken as the CRM's own id, of the channel's kind.
    """
    record = crm_record(lead_id)
    if record is None:
        return lead_id, record_kind(channel, lead_id)
    if record.crm != channel.crm:
        raise DeliveryError(f"crm: lead {lead_id} is not a {channel.crm} record", transient=False)
    return record.id, record.entity


def record_kind(channel: CrmChannel, lead_id: str) -> str:
    if channel.kind:
        return channel.kind
    if channel.crm == "pipedrive":
        return "lead" if _UUID.match(str(lead_id)) else "deal"
    return DEFAULT_KINDS[channel.crm]


def task_owner(payload: dict, address: str | int | None) -> str | None:
    """The CRM user to assign: the recipient's CRM id; the lead's responsible user for the owner role."""
    if address is not None and str(address).strip().isdigit():
        return str(address).strip()
    if payload.get("role") in ("owner", None):
        return None
    raise DeliveryError(f"crm: {payload.get('recipient')} has no numeric crm_id in the rules file", transient=False)


def send_crm(
    channel: CrmChannel, payload: dict, http: requests.Session, address: str | int | None, settings: dict | None
) -> None:
    client = client_for(channel.crm, settings or {}, http)
    if client is None:
        raise DeliveryError(f"crm: the {channel.crm} REST settings are not set", transient=False)
    fired_at = datetime.fromisoformat(str(payload.get("fired_at")).replace("Z", "+00:00"))
    key = f"sla-guard-alert-{payload['alert_id']}" if payload.get("alert_id") is not None else None
    if key is None:
        raise DeliveryError("crm: only alerts can become CRM tasks", transient=False)
    record_id, kind = crm_target(channel, str(payload["lead_id"]))
    try:
        task = TaskRequest(
            lead_id=record_id,
            owner=task_owner(payload, address),
            text=payload["text"],
            due_at=fired_at + timedelta(seconds=channel.due_in.total_seconds()),
            idempotency_key=key,
            kind=kind,
        )
        if client.find(task) is None:
            client.create(task)
    except TaskError as exc:
        raise DeliveryError(
            f"crm: {exc}",
            exc.transient,
            exc.retry_after_s,
            status=exc.status,
            rate_limited=exc.rate_limited,
        ) from None
    except ValueError as exc:
        raise DeliveryError(f"crm: {exc}", transient=False) from None
