"""Deliver one alert row: claim it, send it, record the outcome, schedule a retry if it may help.

An alert is claimed with a conditional UPDATE, so two workers (a retry and the reconciler, say)
never send the same alert at once; a claim expires, so a worker killed mid-send does not strand it.
An alert held by its recipient's quiet hours is created with its claim set to the morning, so
nothing takes it before then. Every channel's failures come as :class:`DeliveryError`: transient
ones are retried with exponential backoff (or after the wait the service asked for), permanent
ones, and transient ones past ``SLA_GUARD_ALERT_MAX_ATTEMPTS``, fail the alert and raise an ops
alert. An unexpected exception from a channel counts as transient. Errors are stored and logged
with the channel's secrets blanked out.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, select, update

from sla_guard.outbox.notify.channels import DeliveryError, channel_secrets, send
from sla_guard.outbox.notify.routing import address_for
from sla_guard.outbox.notify.transport import redact
from sla_guard.outbox.ops_alerts import raise_ops_alert
from sla_guard.queueing import enqueue
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow

log = logging.getLogger("sla_guard.outbox.delivery")

CLAIM_S = 60
"""How long a claimed alert is left to the worker sending it before another may take it over."""

BACKOFF_CAP_S = 600
"""Longest wait between two delivery attempts."""

DELIVER_JOB = "workers.jobs.deliver_alert"
"""Dotted path of the job that (re)tries a delivery."""


def backoff_s(attempts: int) -> float:
    """Exponential backoff after ``attempts`` failed tries: 2, 4, 8, ... seconds, capped."""
    return float(min(BACKOFF_CAP_S, 2 ** max(1, attempts)))


def _claim(runtime: Runtime, alert_id: int, now: datetime) -> AlertRow | None:
    with runtime.db.session() as session:
        return session.execute(
            select(AlertRow).from_statement(
                update(AlertRow)
                .where(
                    AlertRow.id == alert_id,
                    AlertRow.status.in_(("pending", "sending")),
                    or_(AlertRow.claimed_until.is_(None), AlertRow.claimed_until <= now),
                )
                .values(
                    status="sending", attempts=AlertRow.attempts + 1, claimed_until=now + timedelta(seconds=CLAIM_S)
                )
                .returning(AlertRow)
            ),
            execution_options={"populate_existing": True},
        ).scalar_one_or_none()


def deliver(runtime: Runtime, alert_id: int) -> str:
    """Try to deliver the alert once; return its status afterwards."""
    now = runtime.now()
    alert = _claim(runtime, alert_id, now)
    if alert is None:
        return "not_claimed"
    payload = json.loads(alert.payload)
    rules = runtime.rules.current()
    context = {"lead_id": alert.lead_id, "alert_id": alert_id, "channel": alert.channel, "attempt": alert.attempts}
    channel = rules.channels.get(alert.channel)
    try:
        try:
            send(
                alert.channel,
                channel,
                payload,
                runtime.http(),
                address=address_for(rules, alert.channel, alert.recipient or None),
                settings=runtime.settings,
            )
        except DeliveryError:
            raise
        except Exception as exc:  # a channel's unforeseen failure: retried, never fatal to the job
            log.exception("channel raised unexpectedly", extra=context)
            raise DeliveryError(f"unexpected {type(exc).__name__}", transient=True) from None
    except DeliveryError as exc:
        error = redact(str(exc), channel_secrets(channel))[:2000]
        limit = runtime.settings.alert_max_attempts
        retry = exc.transient and alert.attempts < limit
        wait = max(backoff_s(alert.attempts), exc.retry_after_s or 0.0)
        done_at = runtime.now()
        with runtime.db.session() as session:
            session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id)
                .values(
                    status="pending" if retry else "failed",
                    last_error=error,
                    claimed_until=done_at + timedelta(seconds=wait) if retry else None,
                )
            )
        if retry:
            log.warning("alert delivery failed, will retry", extra={**context, "error": error, "retry_in_s": wait})
            try:
                enqueue(
                    runtime.redis,
                    DELIVER_JOB,
                    alert_id,
                    job_id=f"{runtime.queue_name}-alert-{alert_id}-{alert.attempts}",
                    at=done_at + timedelta(seconds=wait),
                    retry=None,
                    queue_name=runtime.queue_name,
                )
            except RedisError:
                pass  # the reconciler picks the alert up when its wait is over
            return "pending"
        log.error("alert delivery failed for good", extra={**context, "error": error})
        alert.last_error = error
        for ops_alert_id in raise_ops_alert(runtime, alert, error):
            deliver(runtime, ops_alert_id)
        return "failed"
    with runtime.db.session() as session:
        session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id)
            .values(status="delivered", delivered_at=runtime.now(), claimed_until=None, last_error=None)
        )
    log.info("alert delivered", extra=context)
    return "delivered"


def stranded_alerts(runtime: Runtime, now: datetime, limit: int = 1000) -> list[tuple[int, int]]:
    """Alerts waiting for a (re)try whose time has come: ``(alert_id, attempts)``."""
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(AlertRow.id, AlertRow.attempts)
                .where(
                    AlertRow.status.in_(("pending", "sending")),
                    or_(AlertRow.claimed_until.is_(None), AlertRow.claimed_until <= now),
                    AlertRow.created_at <= now - timedelta(seconds=5),
                )
                .order_by(AlertRow.id)
                .limit(limit)
            ).all()
        )
