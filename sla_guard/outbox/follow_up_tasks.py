"""Follow-up tasks: create them in the lead's CRM (or alert the owner), close them when the cadence ends.

Creating a task is idempotent: the row is written with the step's escalation, under the lead's
lock, before any call to the CRM; the CRM call carries a stable key and is looked up again
before a retry creates anything, and the CRM's task id is stored as soon as it is known.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import or_, select, update

from sla_guard.core.follow_ups import find_cadence, parse_clock_name, task_text
from sla_guard.outbox.crm_tasks import TaskError, TaskNotFound, TaskRequest, client_for
from sla_guard.outbox.notify.messages import alert_payload
from sla_guard.outbox.notify.routing import route
from sla_guard.queueing import enqueue
from sla_guard.runtime import Runtime
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, EventRow, FollowUpTaskRow, LeadRow
from sla_guard.store.repository import LEAD_FIELDS

log = logging.getLogger("sla_guard.core.follow_ups")

CREATE_JOB = "workers.jobs.create_follow_up_task"
"""Dotted path of the job that (re)tries creating a follow-up task."""

CLOSE_JOB = "workers.jobs.close_follow_up_task"
"""Dotted path of the job that closes the CRM task of a finished follow-up step."""

CLAIM_S = 60
"""How long a worker may hold a task row while it talks to the CRM."""

OWN_SOURCES = ("sla-guard",)
"""Event sources that are sla-guard itself, not a CRM."""


def backoff_s(attempts: int) -> float:
    return float(min(600, 2 ** max(1, attempts)))


def lead_crm(session, lead_id: str) -> str | None:
    """The CRM the lead came from: the source of its first event that is not sla-guard's own."""
    return session.execute(
        select(EventRow.source)
        .where(EventRow.lead_id == lead_id, EventRow.source.not_in(OWN_SOURCES))
        .order_by(EventRow.id)
        .limit(1)
    ).scalar()


def plan_task(session, rules, clock: ClockRow, lead: LeadRow, now: datetime) -> int | None:
    """Write the task row of a follow-up step that just became due; return its id."""
    rule = rules.rule(clock.rule_name)
    cadence = find_cadence(rule, parse_clock_name(clock.name)[0]) if rule else None
    if cadence is None:
        return None
    fields = {"lead_id": lead.lead_id, **{name: getattr(lead, name) for name in LEAD_FIELDS}}
    row = FollowUpTaskRow(
        clock_id=clock.id,
        lead_id=lead.lead_id,
        crm=lead_crm(session, lead.lead_id),
        owner=lead.owner,
        text=task_text(cadence, fields),
        due_at=clock.due_at,
        status="pending",
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def _claim(runtime: Runtime, task_id: int, now: datetime, statuses: tuple[str, ...]) -> FollowUpTaskRow | None:
    with runtime.db.session() as session:
        claimed = session.execute(
            update(FollowUpTaskRow)
            .where(
                FollowUpTaskRow.id == task_id,
                FollowUpTaskRow.status.in_(statuses),
                or_(FollowUpTaskRow.claimed_until.is_(None), FollowUpTaskRow.claimed_until <= now),
            )
            .values(attempts=FollowUpTaskRow.attempts + 1, claimed_until=now + timedelta(seconds=CLAIM_S))
        ).rowcount
        if not claimed:
            return None
        return session.execute(select(FollowUpTaskRow).where(FollowUpTaskRow.id == task_id)).scalar_one()


def _set(runtime: Runtime, task_id: int, **values) -> None:
    with runtime.db.session() as session:
        session.execute(
            update(FollowUpTaskRow).where(FollowUpTaskRow.id == task_id).values(updated_at=runtime.now(), **values)
        )


def alert_owner(runtime: Runtime, row: FollowUpTaskRow, why: str) -> list[int]:
    """Send the follow-up to the owner as an alert (no CRM to hold the task, or the CRM refused)."""
    from sla_guard.outbox.delivery import deliver

    now = runtime.now()
    rules = runtime.rules.current()
    alert_ids = []
    with runtime.db.session() as session:
        lead = session.get(LeadRow, row.lead_id)
        clock = session.get(ClockRow, row.clock_id)
        escalation = session.execute(
            select(EscalationRow).where(EscalationRow.clock_id == row.clock_id, EscalationRow.level == 0)
        ).scalar_one()
        fields = {"lead_id": lead.lead_id, **{name: getattr(lead, name) for name in LEAD_FIELDS}}
        for target in route(("owner",), fields, rules, now):  # quiet hours and the person's language apply
            exists = session.execute(
                select(AlertRow.id).where(
                    AlertRow.escalation_id == escalation.id,
                    AlertRow.channel == target.channel,
                    AlertRow.recipient == (target.recipient or ""),
                )
            ).scalar()
            if exists:
                continue
            alert = AlertRow(
                escalation_id=escalation.id,
                lead_id=lead.lead_id,
                channel=target.channel,
                recipient=target.recipient or "",
                role=target.role,
                payload="{}",
                status="pending",
                attempts=0,
                created_at=now,
                claimed_until=target.not_before,
            )
            session.add(alert)
            session.flush()
            payload = alert_payload(
                alert_id=alert.id,
                escalation_id=escalation.id,
                kind="follow_up.task",
                level=0,
                lead=fields,
                rule=clock.rule_name,
                clock=clock.name,
                due_at=row.due_at,
                fired_at=now,
                recipient=target.recipient,
                role=target.role,
                channel=target.channel,
                locale=target.locale,
            )
            payload["text"] = f"{row.text} (due {row.due_at:%Y-%m-%d %H:%M} UTC)" + (f" {lead.url}" if lead.url else "")
            payload["task"] = row.text
            alert.payload = json.dumps(payload, ensure_ascii=False)
            alert_ids.append(alert.id)
    log.info("follow-up sent to the owner as an alert", extra={"lead_id": row.lead_id, "task_id": row.id, "why": why})
    for alert_id in alert_ids:
        deliver(runtime, alert_id)
    return alert_ids


def create_task(runtime: Runtime, task_id: int) -> str:
    """Create the follow-up task in the CRM (once); return the row's status afterwards."""
    row = _claim(runtime, task_id, runtime.now(), ("pending",))
    if row is None:
        return "not_claimed"
    context = {"lead_id": row.lead_id, "task_id": task_id, "crm": row.crm, "attempt": row.attempts}
    client = client_for(row.crm or "", runtime.settings, runtime.http())
    if client is None:
        alert_owner(runtime, row, "no CRM task API configured")
        _set(runtime, task_id, status="alerted", claimed_until=None)
        return "alerted"
    crm = row.crm.upper()
    request = TaskRequest(
        lead_id=row.lead_id,
        owner=row.owner,
        text=row.text,
        due_at=row.due_at,
        idempotency_key=f"sla-guard-fu-{row.clock_id}",
        kind=runtime.settings.crm(crm).get(f"SLA_GUARD_{crm}_TASK_OBJECT") or "deal",
    )
    try:
        crm_task_id = (client.find(request) if row.attempts > 1 else None) or client.create(request)
    except TaskError as exc:
        retry = exc.transient and row.attempts < runtime.settings.alert_max_attempts
        if retry:
            wait = max(backoff_s(row.attempts), exc.retry_after_s or 0.0)
            _set(runtime, task_id, last_error=str(exc)[:2000], claimed_until=runtime.now() + timedelta(seconds=wait))
            log.warning(
                "follow-up task not created, will retry", extra={**context, "error": str(exc), "retry_in_s": wait}
            )
            try:
                enqueue(
                    runtime.redis,
                    CREATE_JOB,
                    task_id,
                    job_id=f"{runtime.queue_name}-task-{task_id}-{row.attempts}",
                    at=runtime.now() + timedelta(seconds=wait),
                    retry=None,
                    queue_name=runtime.queue_name,
                )
            except RedisError:
                pass  # the reconciler retries it when the wait is over
            return "pending"
        _set(runtime, task_id, status="failed", last_error=str(exc)[:2000], claimed_until=None)
        log.error("follow-up task refused by the CRM", extra={**context, "error": str(exc)})
        alert_owner(runtime, row, "the CRM refused the task")
        return "failed"
    _set(runtime, task_id, status="created", crm_task_id=crm_task_id, last_error=None, claimed_until=None)
    log.info("follow-up task created", extra={**context, "crm_task_id": crm_task_id})
    return "created"


def close_task(runtime: Runtime, task_id: int) -> str:
    """Close the CRM task of a follow-up step that ended (done by a touch, or cancelled)."""
    row = _claim(runtime, task_id, runtime.now(), ("created",))
    if row is None:
        return "not_claimed"
    client = client_for(row.crm or "", runtime.settings, runtime.http())
    try:
        if client is not None and row.crm_task_id:
            client.close(row.crm_task_id)
    except TaskNotFound:
        pass
    except TaskError as exc:
        wait = max(backoff_s(row.attempts), exc.retry_after_s or 0.0)
        final = not exc.transient or row.attempts >= runtime.settings.alert_max_attempts
        _set(
            runtime,
            task_id,
            last_error=str(exc)[:2000],
            status="close_failed" if final else "created",
            claimed_until=None if final else runtime.now() + timedelta(seconds=wait),
        )
        return "close_failed" if final else "created"
    _set(runtime, task_id, status="closed", claimed_until=None, last_error=None)
    log.info(
        "follow-up task closed", extra={"lead_id": row.lead_id, "task_id": task_id, "crm_task_id": row.crm_task_id}
    )
    return "closed"


def tasks_to_close(runtime: Runtime, lead_id: str | None = None) -> list[int]:
    """Open CRM tasks whose follow-up step has ended."""
    with runtime.db.session() as session:
        statement = (
            select(FollowUpTaskRow.id)
            .join(ClockRow, ClockRow.id == FollowUpTaskRow.clock_id)
            .where(
                FollowUpTaskRow.status == "created",
                ClockRow.stopped_at.is_not(None),
                or_(FollowUpTaskRow.claimed_until.is_(None), FollowUpTaskRow.claimed_until <= runtime.now()),
            )
        )
        if lead_id is not None:
            statement = statement.where(FollowUpTaskRow.lead_id == lead_id)
        return list(session.execute(statement.limit(1000)).scalars())


def tasks_to_create(runtime: Runtime) -> list[tuple[int, int]]:
    """Task rows still waiting for their CRM call whose wait is over: ``(task_id, attempts)``."""
    now = runtime.now()
    with runtime.db.session() as session:
        return list(
            session.execute(
                select(FollowUpTaskRow.id, FollowUpTaskRow.attempts)
                .where(
                    FollowUpTaskRow.status == "pending",
                    FollowUpTaskRow.created_at <= now - timedelta(seconds=5),
                    or_(FollowUpTaskRow.claimed_until.is_(None), FollowUpTaskRow.claimed_until <= now),
                )
                .limit(1000)
            ).all()
        )
