"""Jobs an older sla-guard queued under names this version no longer has, carried over on upgrade.

Before jobs lived inside the package they were queued by dotted path (``workers.jobs.deliver_alert``),
and that module is gone; later versions moved some jobs inside the package, or dropped them
(``sla_guard.timers.loop.fire_due_clocks``, ``sla_guard.outbox.base.deliver_ops_alert``,
the CRM look-ups and loss-reason reads of ``sla_guard.outbox.crm_sync``). A
worker of this version cannot run such a job. Each worker, on start and before it takes any
job, looks through the queues it serves (queued, scheduled and failed jobs) for them and
forgets them, after keeping the work that lived only in the job:

- ``reassign_in_crm`` (a reassignment pushed to the CRM) and ``amocrm_loss_reason`` (a loss reason
  to read) become outbox items (:mod:`sla_guard.outbox.crm_reassign`,
  :mod:`sla_guard.ingest.crm_sync`), once each;
- every other old job (``process_lead``, ``fire_tick``, ``deliver_alert``, ``deliver_digest``,
  ``crm_lookup``, ``create_follow_up_task``, ``close_follow_up_task``, and any ``sla_guard.*`` job
  whose function is gone) redid work whose record is a database row: the reconciler derives it
  again from the database (unapplied events, due clocks, outbox rows due for a try; a clock an
  old job had claimed is claimed again when its lease runs out), so the job is only dropped.

The reconciler queues the new items like any others. Running this twice, or on two workers at
once, carries nothing over twice: items are recorded once per key.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from sqlalchemy.orm import Session

from sla_guard.ingest.crm_sync import LOSS_REASONS
from sla_guard.outbox.crm_reassign import REASSIGNMENTS
from sla_guard.runtime import Runtime

log = logging.getLogger("sla_guard.upgrade")

LEGACY_PREFIX = "workers.jobs."
"""The dotted path under which older versions queued every job."""

PACKAGE_PREFIX = "sla_guard."


def old_timer_queue(queue_name: str) -> str:
    """The RQ queue older versions put timer jobs on (nothing goes there any more)."""
    return f"{queue_name}-timers"


def _reassignment(session: Session, now: datetime, lead_id, new_owner, escalation_id, attempt=1, *_) -> None:
    REASSIGNMENTS.record(session, str(lead_id), str(new_owner), int(escalation_id), now)


def _loss_reason(session: Session, now: datetime, lead_id, closed_event_id, *_) -> None:
    LOSS_REASONS.add(session, str(closed_event_id), {"lead_id": str(lead_id), "event_id": str(closed_event_id)}, now)


CARRIED: dict[str, Callable[..., None]] = {
    "reassign_in_crm": _reassignment,
    "amocrm_loss_reason": _loss_reason,
}
"""The old jobs whose work lived only in the job, and how each becomes an outbox item."""


def legacy_jobs(redis, queue_name: str) -> Iterator[Job]:
    """The jobs of one queue (queued, scheduled or failed) queued under an old name."""
    queue = Queue(queue_name, connection=redis)
    ids = [
        *queue.get_job_ids(),
        *ScheduledJobRegistry(queue=queue).get_job_ids(),
        *FailedJobRegistry(queue=queue).get_job_ids(),
    ]
    for job in Job.fetch_many(list(dict.fromkeys(ids)), connection=redis):
        try:
            name = job.func_name if job is not None else None
        except Exception:  # a job whose data cannot be read is none of ours to judge
            continue
        if isinstance(name, str) and (name.startswith(LEGACY_PREFIX) or is_gone(name)):
            yield job


def is_gone(func_name: str) -> bool:
    """Whether ``func_name`` names a function of the package that this version does not have."""
    if not func_name.startswith(PACKAGE_PREFIX):
        return False
    module_name, _, function = func_name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception:  # gone, or no longer importable on its own: either way this version cannot run it
        return True
    return not callable(getattr(module, function, None))


def carry_over(runtime: Runtime, queue_names: Iterable[str]) -> Counter:
    """Keep the work of the old-named jobs in ``queue_names`` as outbox items and delete the
    jobs; how many of each old job were found."""
    found: Counter = Counter()
    for queue_name in queue_names:
        for old in legacy_jobs(runtime.redis, queue_name):
            name = old.func_name.removeprefix(LEGACY_PREFIX)
            carry = CARRIED.get(name) if old.func_name.startswith(LEGACY_PREFIX) else None
            if carry is not None:
                try:
                    with runtime.db.session() as session:
                        carry(session, runtime.now(), *old.args)
                except (TypeError, ValueError):
                    log.warning("old job with unreadable arguments dropped", extra={"job": name, "job_id": old.id})
            old.delete()
            found[name] += 1
    if found:
        log.warning("jobs of an older version carried over", extra={"jobs": dict(found)})
    return found
