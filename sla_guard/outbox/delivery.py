"""Alerts, the outbox's first kind: deliver one alert row through its channel.

An alert held by its recipient's quiet hours is created with its claim set to the morning, so
nothing takes it before then. Claims, retries with backoff (or after the wait the service
asked for) and giving up are the outbox's (:mod:`sla_guard.outbox.base`); an alert that fails
for good raises an ops alert on the same escalation (:mod:`sla_guard.outbox.ops_alerts`), and
an ops alert that fails raises no other. Errors are stored and logged with the channel's
secrets blanked out.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from sla_guard import runtime as runtime_module
from sla_guard.outbox.base import OutboxKind
from sla_guard.outbox.notify.channels import channel_secrets, send
from sla_guard.outbox.notify.routing import address_for
from sla_guard.outbox.ops_alerts import raise_ops_alert
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow

log = logging.getLogger("sla_guard.outbox.delivery")


class Alerts(OutboxKind):
    name = "alert"
    what = "alert delivery"
    model = AlertRow

    def attempt(self, runtime: Runtime, row: AlertRow) -> str:
        rules = runtime.rules.current()
        send(
            row.channel,
            rules.channels.get(row.channel),
            json.loads(row.payload),
            runtime.http(),
            address=address_for(rules, row.channel, row.recipient or None),
            settings=runtime.settings,
        )
        self.update(
            runtime, row.id, status="delivered", delivered_at=runtime.now(), claimed_until=None, last_error=None
        )
        log.info("alert delivered", extra=self.context(row))
        return "delivered"

    def context(self, row: AlertRow) -> dict:
        return {"lead_id": row.lead_id, "alert_id": row.id, "channel": row.channel, "attempt": row.attempts}

    def secrets(self, runtime: Runtime, row: AlertRow) -> tuple[str, ...]:
        return channel_secrets(runtime.rules.current().channels.get(row.channel))

    def on_retry(self, runtime: Runtime, row: Any, error: str, wait: float, context: dict) -> None:
        log.warning("alert delivery failed, will retry", extra={**context, "error": error, "retry_in_s": wait})

    def on_give_up(self, runtime: Runtime, row: AlertRow, error: str, context: dict) -> None:
        log.error("alert delivery failed for good", extra={**context, "error": error})
        for ops_alert_id in raise_ops_alert(runtime, row, error):
            self.run(runtime, ops_alert_id)


@job()
def deliver_alert(alert_id: int) -> str:
    """Job: one delivery attempt of an alert."""
    return ALERTS.run(runtime_module.current(), alert_id)


ALERTS = Alerts(deliver_alert)


def deliver(runtime: Runtime, alert_id: int) -> str:
    """Try to deliver the alert once; return its status afterwards."""
    return ALERTS.run(runtime, alert_id)


def queue_delivery(runtime: Runtime, alert_id: int) -> bool:
    """Queue the first delivery attempt of an alert as a job of its own; False when Redis is down
    (the reconciler queues it then)."""
    try:
        return ALERTS.schedule(runtime.redis, runtime.queue_name, alert_id, 1)
    except RedisError:
        return False


def stranded_alerts(runtime: Runtime, now: datetime, limit: int = 1000) -> list[tuple[int, int]]:
    """Alerts waiting for a (re)try whose time has come: ``(alert_id, attempts)``."""
    with runtime.db.session() as session:
        return ALERTS.due(session, now, limit)
