"""Alerts, the outbox's first kind: deliver one alert row through its channel.

An alert held by its recipient's quiet hours is created with its claim set to the morning, so
nothing takes it before then. Claims, retries with backoff (or after the wait the service
asked for) and giving up are the outbox's (:mod:`sla_guard.outbox.base`); an alert that fails
for good raises an ops alert, as every kind's permanent failure does (the ``ops`` kind, with
the words of :func:`sla_guard.outbox.ops_alerts.delivery_failed`), and an ops alert that fails
raises no other. Errors are stored and logged with the channel's
secrets blanked out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from sla_guard import runtime as runtime_module
from sla_guard.core.rules.schema import RuleSet
from sla_guard.outbox.base import OPS_ALERTS, OutboxKind
from sla_guard.outbox.notify.channels import channel_secrets, send
from sla_guard.outbox.notify.context import clock_facts, person_zone
from sla_guard.outbox.notify.messages import alert_payload
from sla_guard.outbox.notify.routing import Delivery, address_for
from sla_guard.outbox.ops_alerts import OPS_ROLE, delivery_failed
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow, ClockRow
from sla_guard.store.outbox import insert_alert

log = logging.getLogger("sla_guard.outbox.delivery")


class ChannelDelivery(OutboxKind):
    """A kind whose rows go out through a channel of the rules file (alerts, digests): each row
    names its ``channel`` and ``recipient`` and holds the ``payload``."""

    sent_column: ClassVar[str]
    """The row's column that records when it was delivered."""
    logger: ClassVar[logging.Logger] = log

    def attempt(self, runtime: Runtime, row: Any) -> str:
        rules = runtime.rules.current()
        send(
            row.channel,
            rules.channels.get(row.channel),
            json.loads(row.payload),
            runtime.http(),
            address=address_for(rules, row.channel, row.recipient or None),
            settings=runtime.settings,
        )
        done = {self.sent_column: runtime.now(), "status": "delivered", "claimed_until": None, "last_error": None}
        self.update(runtime, row.id, **done)
        self.logger.info(f"{self.name} delivered", extra=self.context(row))
        return "delivered"

    def secrets(self, runtime: Runtime, row: Any) -> tuple[str, ...]:
        return channel_secrets(runtime.rules.current().channels.get(row.channel))


class Alerts(ChannelDelivery):
    name = "alert"
    what = "alert delivery"
    model = AlertRow
    sent_column = "delivered_at"
    logger = log

    def context(self, row: AlertRow) -> dict:
        return {"lead_id": row.lead_id, "alert_id": row.id, "channel": row.channel, "attempt": row.attempts}

    def on_retry(self, runtime: Runtime, row: Any, error: str, wait: float, context: dict) -> None:
        log.warning("alert delivery failed, will retry", extra={**context, "error": error, "retry_in_s": wait})

    def on_give_up(self, runtime: Runtime, row: AlertRow, error: str, context: dict) -> None:
        log.error("alert delivery failed for good", extra={**context, "error": error})
        OPS_ALERTS.raise_for(runtime, self, row, error)

    def ops_alert(self, row: AlertRow, error: str, locale: str) -> dict | None:
        if row.role == OPS_ROLE:
            return None  # an ops alert an older version kept as an alert row raises no other
        return delivery_failed(row, error, locale)


@job()
def deliver_alert(alert_id: int) -> str:
    """Job: one delivery attempt of an alert."""
    return ALERTS.run(runtime_module.current(), alert_id)


ALERTS = Alerts(deliver_alert)


def record_alert(
    session: Session,
    target: Delivery,
    now: datetime,
    *,
    rules: RuleSet,
    clock: ClockRow,
    escalation_id: int,
    lead: dict,
    text: dict | None = None,
    press_for: Callable[[int], str | None] | None = None,
    **facts,
) -> int:
    """Write the alert of one routed ``target`` (held until ``target.not_before`` when quiet hours
    apply) with its payload (:func:`alert_payload` of ``facts``, then ``text`` on top); its id.

    What the ``clock`` says goes into every alert (its rule and name, its deadline, the SLA and
    whether it counts business time, a follow-up's task), and so do the target's address and
    language and the recipient's and the team's time zones; ``facts`` add to it or override it. ``press_for`` makes the signed value
    of the chat's "Take it" button from the new alert's id."""
    known = clock_facts(rules, clock.rule_name, clock.name, lead)
    facts = {
        "rule": clock.rule_name,
        "clock": clock.name,
        "deadline_at": clock.due_at,
        "sla": known.sla,
        "business": known.business,
        "task": known.task,
        "zone": person_zone(rules, target.recipient),
        "team_zone": rules.spec.timezone,
        "recipient": target.recipient,
        "role": target.role,
        "channel": target.channel,
        "locale": target.locale,
        **facts,
    }
    alert = insert_alert(
        session,
        escalation_id=escalation_id,
        lead_id=lead["lead_id"],
        channel=target.channel,
        recipient=target.recipient,
        role=target.role,
        now=now,
        not_before=target.not_before,
    )
    if press_for is not None:
        facts["press"] = press_for(alert.id)
    payload = alert_payload(alert_id=alert.id, escalation_id=escalation_id, lead=lead, fired_at=now, **facts)
    alert.payload = json.dumps({**payload, **(text or {})}, ensure_ascii=False)
    return alert.id


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
