"""RQ job functions: thin shells that log their job and lead ids and call the domain code."""

from __future__ import annotations

import logging

from rq import get_current_job

from sla_guard import runtime
from sla_guard.ingest.processing import process_lead as _process_lead
from sla_guard.outbox import crm_reassign, crm_sync, follow_up_tasks
from sla_guard.outbox.delivery import deliver
from sla_guard.outbox.digests import deliver_digest as _deliver_digest

log = logging.getLogger("sla_guard.jobs")


def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def process_lead(lead_id: str) -> None:
    """Apply every event of the lead received so far."""
    log.debug("job started", extra={"job_id": _job_id(), "lead_id": lead_id, "job": "process_lead"})
    _process_lead(runtime.current(), lead_id)


def deliver_alert(alert_id: int) -> None:
    """Retry one alert delivery."""
    status = deliver(runtime.current(), alert_id)
    log.debug("delivery job done", extra={"job_id": _job_id(), "alert_id": alert_id, "status": status})


def crm_lookup(lookup_id: int) -> None:
    """One attempt of a CRM look-up (a Bitrix24 record read over REST); retries schedule themselves."""
    status = crm_sync.run_lookup(runtime.current(), lookup_id)
    log.debug("look-up job done", extra={"job_id": _job_id(), "lookup_id": lookup_id, "status": status})


def amocrm_loss_reason(lead_id: str, closed_event_id: str) -> None:
    """Read a lost amoCRM lead's loss reason over REST and store it."""
    reason = crm_sync.read_loss_reason(runtime.current(), lead_id, closed_event_id)
    log.debug("loss reason job done", extra={"job_id": _job_id(), "lead_id": lead_id, "found": reason is not None})


def create_follow_up_task(task_id: int) -> None:
    """Create (or retry creating) a follow-up task in the lead's CRM."""
    status = follow_up_tasks.create_task(runtime.current(), task_id)
    log.debug("follow-up task job done", extra={"job_id": _job_id(), "task_id": task_id, "status": status})


def close_follow_up_task(task_id: int) -> None:
    """Close the CRM task of a follow-up step that ended."""
    status = follow_up_tasks.close_task(runtime.current(), task_id)
    log.debug("follow-up close job done", extra={"job_id": _job_id(), "task_id": task_id, "status": status})


def reassign_in_crm(lead_id: str, new_owner: str, escalation_id: int, attempt: int) -> None:
    """Tell the lead's CRM of a reassignment (a retry, or one the timer left to a job)."""
    status = crm_reassign.tell_crm(runtime.current(), lead_id, new_owner, escalation_id, attempt)
    log.debug(
        "reassignment job done",
        extra={"job_id": _job_id(), "lead_id": lead_id, "escalation_id": escalation_id, "crm_status": status},
    )


def deliver_digest(digest_id: int) -> None:
    """One delivery attempt of a daily digest or weekly summary."""
    status = _deliver_digest(runtime.current(), digest_id)
    log.debug("digest job done", extra={"job_id": _job_id(), "digest_id": digest_id, "status": status})
