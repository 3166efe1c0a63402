"""RQ job functions: thin shells that log their job and lead ids and call the domain code."""

from __future__ import annotations

import logging

from rq import get_current_job

from sla_guard import runtime
from sla_guard.delivery import deliver
from sla_guard.escalation import run_timer
from sla_guard.processing import process_lead as _process_lead

log = logging.getLogger("sla_guard.jobs")


def _job_id() -> str | None:
    job = get_current_job()
    return job.id if job else None


def process_lead(lead_id: str) -> None:
    """Apply every event of the lead received so far."""
    log.debug("job started", extra={"job_id": _job_id(), "lead_id": lead_id, "job": "process_lead"})
    _process_lead(runtime.current(), lead_id)


def fire_clock(clock_id: int, fire_epoch: int | None = None) -> None:
    """A clock's timer: record and send whatever the clock owes now."""
    result = run_timer(runtime.current(), clock_id, fire_epoch)
    log.debug("timer done", extra={"job_id": _job_id(), "clock_id": clock_id,
                                   "escalations": len(result.escalation_ids), "alerts": len(result.alert_ids)})


def deliver_alert(alert_id: int) -> None:
    """Retry one alert delivery."""
    status = deliver(runtime.current(), alert_id)
    log.debug("delivery job done", extra={"job_id": _job_id(), "alert_id": alert_id, "status": status})
