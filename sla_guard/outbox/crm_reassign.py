"""Tell the lead's CRM who its new owner is after an escalation reassigned it.

An escalation level with ``reassign: true`` hands the lead to the next member of the owner's
team inside sla-guard (a ``lead.assigned`` event of its own, and ``reassigned_to`` on the
escalation). This module makes the same change in the CRM the lead came from, over the
``assign_owner`` call of its task client (:mod:`sla_guard.outbox.crm_tasks`):

- a lead from a source without a client (the generic webhook, a CRM whose REST settings are
  not set) is left alone: ``not_supported``;
- a transient failure (429, 5xx, a timeout) is retried by the job :data:`REASSIGN_JOB`, at the
  backoff or the CRM's ``Retry-After`` if longer, up to ``SLA_GUARD_ALERT_MAX_ATTEMPTS``;
- a permanent one (refused credentials, invalid data, a deleted record) is logged at ERROR.

Every outcome is logged with ``lead_id``, ``escalation_id`` and ``crm_status`` (``assigned``,
``retrying``, ``failed``, ``superseded``, ``not_supported``). Setting an owner the record
already has is harmless, so a repeated attempt needs no look-up first; an attempt made after
the lead changed hands again (a later reassignment, or a person in the CRM) is skipped, so a
late retry never takes the lead back from its newer owner.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import select

from sla_guard.outbox.crm_tasks import TaskError, client_for
from sla_guard.outbox.follow_up_tasks import backoff_s, lead_crm
from sla_guard.queueing import enqueue
from sla_guard.runtime import Runtime
from sla_guard.store.models import LeadRow

log = logging.getLogger("sla_guard.outbox.crm_reassign")

REASSIGN_JOB = "workers.jobs.reassign_in_crm"
"""Dotted path of the job that (re)tries telling the CRM of a reassignment."""

DEFAULT_KIND = "deal"
"""What a lead id names in the CRM unless ``SLA_GUARD_<CRM>_TASK_OBJECT`` says ``lead``."""


def job_id(queue_name: str, escalation_id: int, attempt: int) -> str:
    """Deterministic id of the job making attempt ``attempt`` (1, 2, …) for one escalation."""
    return f"{queue_name}-reassign-{escalation_id}-{attempt}"


def crm_user(runtime: Runtime, owner: str) -> str:
    """The CRM user id of an owner: the person's ``crm_id`` in the rules file, else the name
    itself (CRM adapters report owners by their CRM user id)."""
    person = runtime.rules.current().people.get(owner)
    crm_id = getattr(person, "crm_id", None)
    return str(crm_id).strip() if crm_id is not None and str(crm_id).strip() else owner


def queue_attempt(
    runtime: Runtime, lead_id: str, new_owner: str, escalation_id: int, attempt: int, at: datetime | None = None
) -> bool:
    """Enqueue attempt ``attempt`` (now, or at the aware ``at``); False when Redis is down."""
    try:
        enqueue(
            runtime.redis,
            REASSIGN_JOB,
            lead_id,
            new_owner,
            escalation_id,
            attempt,
            job_id=job_id(runtime.queue_name, escalation_id, attempt),
            at=at,
            queue_name=runtime.queue_name,
        )
    except RedisError:
        return False
    return True


def _current_owner(runtime: Runtime, lead_id: str) -> tuple[str | None, str | None]:
    """The lead's CRM (the source of its first event not sla-guard's own) and its owner now."""
    with runtime.db.session() as session:
        crm = lead_crm(session, lead_id)
        owner = session.execute(select(LeadRow.owner).where(LeadRow.lead_id == lead_id)).scalar()
    return crm, owner


def _outcome(level: int, message: str, context: dict, crm_status: str, **fields) -> str:
    log.log(level, message, extra={**context, "crm_status": crm_status, **fields})
    return crm_status


def tell_crm(runtime: Runtime, lead_id: str, new_owner: str, escalation_id: int, attempt: int = 1) -> str:
    """Make ``new_owner`` the lead's owner in its CRM; return the ``crm_status`` logged."""
    crm, owner_now = _current_owner(runtime, lead_id)
    context = {"lead_id": lead_id, "escalation_id": escalation_id, "crm": crm, "owner": new_owner, "attempt": attempt}
    client = client_for(crm or "", runtime.settings, runtime.http())
    if client is None:
        return _outcome(
            logging.INFO, "reassignment not sent: the lead's source has no CRM API configured", context, "not_supported"
        )
    if owner_now is not None and owner_now != new_owner:
        return _outcome(
            logging.INFO,
            "reassignment not sent: the lead has another owner since",
            context,
            "superseded",
            owner_now=owner_now,
        )
    kind = runtime.settings.crm(crm).get(f"SLA_GUARD_{crm.upper()}_TASK_OBJECT") or DEFAULT_KIND
    try:
        client.assign_owner(lead_id, crm_user(runtime, new_owner), kind)
    except TaskError as exc:
        if exc.transient and attempt < runtime.settings.alert_max_attempts:
            wait = max(backoff_s(attempt), exc.retry_after_s or 0.0)
            at = runtime.now() + timedelta(seconds=wait)
            if queue_attempt(runtime, lead_id, new_owner, escalation_id, attempt + 1, at):
                return _outcome(
                    logging.WARNING,
                    "reassignment not accepted by the CRM yet, will retry",
                    context,
                    "retrying",
                    error=str(exc),
                    retry_in_s=wait,
                )
            return _outcome(
                logging.ERROR,
                "reassignment not accepted by the CRM and its retry could not be queued",
                context,
                "failed",
                error=str(exc),
            )
        return _outcome(
            logging.ERROR,
            "reassignment refused by the CRM",
            context,
            "failed",
            error=str(exc),
            transient=exc.transient,
            http_status=exc.status,
        )
    return _outcome(logging.INFO, "reassignment sent to the CRM", context, "assigned", kind=kind)
