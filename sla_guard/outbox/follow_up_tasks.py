"""Follow-up tasks: create them in the lead's CRM (or alert the owner), close them when the cadence ends.

Creating a task is idempotent: the row is written with the step's escalation, under the lead's
lock, before any call to the CRM; the CRM call carries a stable key and is looked up again
before a retry creates anything, and the CRM's task id is stored as soon as it is known.
Creating and closing are two outbox kinds (:mod:`sla_guard.outbox.base`) over the same rows.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_

from sla_guard import runtime as runtime_module
from sla_guard.core.follow_ups import find_cadence, parse_clock_name, task_text
from sla_guard.core.record_ids import crm_of, crm_record
from sla_guard.exceptions import TaskNotFound
from sla_guard.outbox.base import OutboxKind, attempt_now
from sla_guard.outbox.crm_tasks import TaskRequest, client_for
from sla_guard.outbox.delivery import ALERTS, OPS_ALERTS, Escalated, record_alert
from sla_guard.outbox.notify.routing import route
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.leads import lead_fields, lead_row
from sla_guard.store.models import ClockRow, FollowUpTaskRow, LeadRow
from sla_guard.store.outbox import alert_exists, first_escalation, insert_follow_up_task, of_ended_clocks, reload_clock

log = logging.getLogger("sla_guard.core.follow_ups")


def plan_task(session, rules, clock: ClockRow, lead: LeadRow, now: datetime) -> int | None:
    """Write the task row of a follow-up step that just became due; return its id."""
    rule = rules.rule(clock.rule_name)
    cadence = find_cadence(rule, parse_clock_name(clock.name)[0]) if rule else None
    if cadence is None:
        return None
    return insert_follow_up_task(
        session,
        clock_id=clock.id,
        lead_id=lead.lead_id,
        crm=crm_of(lead.lead_id),
        owner=lead.owner,
        text=task_text(cadence, lead_fields(lead)),
        due_at=clock.due_at,
        created_at=now,
        updated_at=now,
    )


def alert_owner(runtime: Runtime, row: FollowUpTaskRow, why: str) -> list[int]:
    """Send the follow-up to the owner as an alert (no CRM to hold the task, or the CRM refused)."""
    now = runtime.now()
    rules = runtime.rules.current()
    alert_ids = []
    with runtime.db.session() as session:
        fields = lead_fields(lead_row(session, row.lead_id))
        clock = reload_clock(session, row.clock_id)
        escalation = first_escalation(session, row.clock_id)
        about = Escalated(rules, clock, escalation.id, fields)
        for target in route(("owner",), fields, rules, now):  # quiet hours and the person's language apply
            if alert_exists(session, escalation.id, target.channel, target.recipient):
                continue
            alert_id = record_alert(
                session,
                about,
                target,
                now,
                text={"task": row.text},
                kind="follow_up.task",
                level=0,
                due_at=row.due_at,
                deadline_at=row.due_at,
                task=row.text,
            )
            alert_ids.append(alert_id)
    log.info("follow-up sent to the owner as an alert", extra={"lead_id": row.lead_id, "task_id": row.id, "why": why})
    attempt_now(runtime, [(ALERTS, alert_id) for alert_id in alert_ids])
    return alert_ids


class _TaskKind(OutboxKind):
    model = FollowUpTaskRow
    claimed_status = None

    def update(self, runtime: Runtime, item_id: int, **values) -> None:
        super().update(runtime, item_id, updated_at=runtime.now(), **values)

    def context(self, row: FollowUpTaskRow) -> dict:
        return {"lead_id": row.lead_id, "task_id": row.id, "crm": row.crm, "attempt": row.attempts}

    def client(self, runtime: Runtime, row: FollowUpTaskRow):
        record = crm_record(row.lead_id)
        return client_for(record.crm, runtime.settings, runtime.http()) if record else None


class FollowUpTasks(_TaskKind):
    """Creating a follow-up step's task in the lead's CRM (or, without one, alerting the owner)."""

    name = "task"
    what = "follow-up task creation"
    open_statuses = ("pending",)

    def attempt(self, runtime: Runtime, row: FollowUpTaskRow) -> str:
        client = self.client(runtime, row)
        if client is None:
            alert_owner(runtime, row, "no CRM task API configured")
            self.update(runtime, row.id, status="alerted", claimed_until=None)
            return "alerted"
        record = crm_record(row.lead_id)
        request = TaskRequest(
            lead_id=record.id,
            owner=row.owner,
            text=row.text,
            due_at=row.due_at,
            idempotency_key=f"sla-guard-fu-{row.clock_id}",
            kind=record.entity,
        )
        crm_task_id = (client.find(request) if row.attempts > 1 else None) or client.create(request)
        self.update(runtime, row.id, status="created", crm_task_id=crm_task_id, last_error=None, claimed_until=None)
        log.info("follow-up task created", extra={**self.context(row), "crm_task_id": crm_task_id})
        return "created"

    def on_retry(self, runtime: Runtime, row, error: str, wait: float, context: dict) -> None:
        log.warning("follow-up task not created, will retry", extra={**context, "error": error, "retry_in_s": wait})

    def on_give_up(self, runtime: Runtime, row: FollowUpTaskRow, error: str, context: dict) -> None:
        super().on_give_up(runtime, row, error, context)
        alert_owner(runtime, row, "the CRM refused the task")


class FollowUpCloses(_TaskKind):
    """Closing the CRM task of a follow-up step that ended (done by a touch, or cancelled)."""

    name = "close"
    what = "follow-up task closing"
    open_statuses = ("created",)
    retry_status = "created"
    failed_status = "close_failed"
    retrying = "created"
    gave_up = "close_failed"
    grace = timedelta(0)

    def due_clause(self, now: datetime):
        return and_(super().due_clause(now), of_ended_clocks())

    def attempt(self, runtime: Runtime, row: FollowUpTaskRow) -> str:
        client = self.client(runtime, row)
        try:
            if client is not None and row.crm_task_id:
                client.close(row.crm_task_id)
        except TaskNotFound:
            pass
        self.update(runtime, row.id, status="closed", claimed_until=None, last_error=None)
        log.info("follow-up task closed", extra={**self.context(row), "crm_task_id": row.crm_task_id})
        return "closed"


@job()
def create_follow_up_task(task_id: int) -> str:
    """Job: create (or retry creating) a follow-up task in the lead's CRM."""
    return TASKS.run(runtime_module.current(), task_id)


@job()
def close_follow_up_task(task_id: int) -> str:
    """Job: close the CRM task of a follow-up step that ended."""
    return CLOSES.run(runtime_module.current(), task_id)


TASKS = FollowUpTasks(create_follow_up_task, ops=OPS_ALERTS)
CLOSES = FollowUpCloses(close_follow_up_task, ops=OPS_ALERTS)


def queue_closes(runtime: Runtime, lead_id: str) -> int:
    """Queue the closing of the lead's CRM tasks whose follow-up step has ended; the number queued."""
    with runtime.db.session() as session:
        due = CLOSES.due(session, runtime.now(), 1000, FollowUpTaskRow.lead_id == lead_id)
    return sum(CLOSES.schedule(runtime.redis, runtime.queue_name, task_id, attempts + 1) for task_id, attempts in due)
