"""Ops alerts: when an alert fails for good, the channels under ``ops.notify`` hear about it.

An ops alert is an ordinary alert row of the same escalation, with role ``ops`` and recipient
``ops:<failed alert id>``; the unique (escalation, channel, recipient) constraint makes it
once per failed alert and ops channel, and it is delivered and retried like any alert. An ops
alert that fails raises no further ops alert.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import update

from sla_guard.outbox.notify.messages import texts
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow
from sla_guard.store.repository import dialect_insert

log = logging.getLogger("sla_guard.ops")

OPS_ROLE = "ops"
"""Role of the alerts sla-guard sends about itself."""

OPS_KIND = "ops.delivery_failed"
"""``kind`` of an ops alert about an alert that could not be delivered."""


def ops_payload(*, alert_id: int, failed: AlertRow, channel: str, error: str, locale: str, fired_at: str) -> dict:
    """What an ops channel receives about ``failed`` (the error is already free of secrets)."""
    template = texts(locale)
    text = template["ops"]["delivery_failed"].format(
        alert_id=failed.id,
        lead_id=failed.lead_id,
        channel=failed.channel,
        recipient=failed.recipient or "—",
        attempts=failed.attempts,
        error=error,
    )
    return {
        "alert_id": alert_id,
        "escalation_id": failed.escalation_id,
        "kind": OPS_KIND,
        "lead_id": failed.lead_id,
        "failed_alert_id": failed.id,
        "failed_channel": failed.channel,
        "failed_recipient": failed.recipient or None,
        "attempts": failed.attempts,
        "error": error,
        "recipient": None,
        "role": OPS_ROLE,
        "channel": channel,
        "fired_at": fired_at,
        "text": text,
        "subject": template["subject"][OPS_KIND],
    }


def raise_ops_alert(runtime: Runtime, failed: AlertRow, error: str) -> list[int]:
    """Record the ops alerts about ``failed``; return the ids of those new (to deliver now)."""
    rules = runtime.rules.current()
    if failed.role == OPS_ROLE or not rules.spec.ops.notify:
        return []
    now = runtime.now()
    created = []
    with runtime.db.session() as session:
        for channel in dict.fromkeys(rules.spec.ops.notify):
            alert_id = session.execute(
                dialect_insert(session, AlertRow)
                .values(
                    escalation_id=failed.escalation_id,
                    lead_id=failed.lead_id,
                    channel=channel,
                    recipient=f"{OPS_ROLE}:{failed.id}",
                    role=OPS_ROLE,
                    payload="{}",
                    status="pending",
                    attempts=0,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["escalation_id", "channel", "recipient"])
                .returning(AlertRow.id)
            ).scalar()
            if alert_id is None:
                continue
            payload = ops_payload(
                alert_id=alert_id,
                failed=failed,
                channel=channel,
                error=error,
                locale=rules.spec.locale,
                fired_at=now.isoformat().replace("+00:00", "Z"),
            )
            session.execute(
                update(AlertRow).where(AlertRow.id == alert_id).values(payload=json.dumps(payload, ensure_ascii=False))
            )
            created.append(alert_id)
    if created:
        log.warning("ops alert raised", extra={"alert_id": failed.id, "lead_id": failed.lead_id, "ops_alerts": created})
    return created
