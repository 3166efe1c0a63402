"""What an ops alert says: the payloads the channels under ``ops.notify`` receive when sla-guard
gives up on outgoing work.

Every kind's permanent failure raises its ops alerts the same way (the ``ops`` outbox kind,
:class:`sla_guard.outbox.base.OpsAlerts`); a kind only chooses the words. An alert that could
not be delivered says where it was going (:func:`delivery_failed`); any other work says what it
was (:func:`work_failed`). Errors reach here already free of secrets.
"""

from __future__ import annotations

import json
from typing import Any

from sla_guard.outbox.notify.messages import texts

OPS_ROLE = "ops"
"""Role of the alerts sla-guard sends about itself."""

DELIVERY_FAILED = "ops.delivery_failed"
"""``kind`` of an ops alert about an alert that could not be delivered."""

WORK_FAILED = "ops.work_failed"
"""``kind`` of an ops alert about any other outgoing work given up."""


def _payload(kind: str, failed_kind: str, row: Any, error: str, lead_id: str | None, text: str, locale: str) -> dict:
    return {
        "alert_id": None,
        "kind": kind,
        "failed_kind": failed_kind,
        "failed_id": row.id,
        "attempts": row.attempts,
        "error": error,
        "lead_id": lead_id,
        "recipient": None,
        "role": OPS_ROLE,
        "text": text,
        "subject": texts(locale)["subject"][kind],
    }


def delivery_failed(failed: Any, error: str, locale: str) -> dict:
    """The ops alert about an alert (an ``alerts`` row) that could not be delivered."""
    text = texts(locale)["ops"]["delivery_failed"].format(
        alert_id=failed.id,
        lead_id=failed.lead_id,
        channel=failed.channel,
        recipient=failed.recipient or "—",
        attempts=failed.attempts,
        error=error,
    )
    return {
        **_payload(DELIVERY_FAILED, "alert", failed, error, failed.lead_id, text, locale),
        "escalation_id": failed.escalation_id,
        "failed_alert_id": failed.id,
        "failed_channel": failed.channel,
        "failed_recipient": failed.recipient or None,
    }


def work_failed(what: str, kind: str, row: Any, error: str, locale: str) -> dict:
    """The ops alert about an item of ``kind`` (``what`` it is, for people) given up."""
    text = texts(locale)["ops"]["work_failed"].format(what=what, item_id=row.id, attempts=row.attempts, error=error)
    lead_id = getattr(row, "lead_id", None) or json.loads(getattr(row, "args", None) or "{}").get("lead_id")
    return _payload(WORK_FAILED, kind, row, error, lead_id, text, locale)
