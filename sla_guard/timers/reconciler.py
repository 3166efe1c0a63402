"""The safety net: every few seconds, make Redis agree with the database.

- events accepted but never applied (their doorbell was lost, or Redis was down) are applied;
- clocks whose timer is missing from Redis (``FLUSHALL``, a crash) are re-armed, those already
  due at once (a timer whose loop died is claimed again by another when its lease ends);
- every outbox kind's items whose retry time has come, or whose worker died, are queued again
  (alerts, follow-up tasks to create or close, Bitrix24 look-ups, reassignments pushed to a CRM,
  amoCRM loss-reason reads, ops alerts: the one "due for retry" query of each);
- digests whose local time has come are recorded (once per period) and queued for delivery.
Everything it triggers is idempotent, so running it on several workers at once is harmless;
a short Redis lock keeps it to one at a time anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from sla_guard.ingest.crm_sync import LOOKUPS, LOSS_REASONS
from sla_guard.ingest.processing import (
    SET_ASIDE_AT,
    apply_leads,
    arm,
    arm_missing,
    armed_at,
    batch_size,
    bring_forward,
    push,
    score_of,
    wait_for_timers,
)
from sla_guard.outbox.crm_reassign import REASSIGNMENTS
from sla_guard.outbox.delivery import ALERTS, OPS_ALERTS
from sla_guard.outbox.digests import queue_digests
from sla_guard.outbox.follow_up_tasks import CLOSES, TASKS
from sla_guard.runtime import Runtime
from sla_guard.store.quarantine import quarantined_ids
from sla_guard.store.repository import clocks_to_arm, unprocessed_leads
from sla_guard.store.rule_versions import leads_on_other_rules, record_rule_version

log = logging.getLogger("sla_guard.timers.reconciler")

LOCK_KEY = "sla-guard:{queue}:reconciler-lock"
"""Redis key held by the worker whose reconciler is running, one per queue."""

APPLIED_KEY = "sla-guard:{queue}:rules-applied"
"""Redis key holding the rules version whose recomputation of open clocks was done."""


EVENT_GRACE = timedelta(seconds=2)
"""Events younger than this are left to the pump their doorbell woke when they were accepted."""

STEP_ASIDE_S = 1.0
"""Longest the reconciler waits for due timers before it applies one more batch of lost events."""


@dataclass
class ReconcileReport:
    events_applied: int = 0
    timers_armed: int = 0
    timers_fired: int = 0
    alerts_retried: int = 0
    lookups_retried: int = 0
    digests_queued: int = 0
    leads_recomputed: int = 0
    tasks_retried: int = 0
    crm_pushes_retried: int = 0
    """Reassignments, loss-reason reads and ops alerts queued again."""


ITEM_KINDS = (REASSIGNMENTS, LOSS_REASONS, OPS_ALERTS)
"""Outbox kinds kept in ``outbox_items``, retried by the reconciler like the others."""


def apply_rules_version(runtime: Runtime) -> int:
    """Once per new rules version: record it, and recompute every lead with a running clock.

    Open clocks are recomputed from their original start under the new version; finished
    clocks keep the rule they were judged by; escalations already recorded are never repeated.
    """
    rules = runtime.rules.current()
    key = APPLIED_KEY.format(queue=runtime.queue_name)
    applied = runtime.redis.get(key)
    if applied is not None and applied.decode() == rules.version:
        return 0
    with runtime.db.session() as session:
        record_rule_version(session, rules.version, rules.text, runtime.now())
        leads = leads_on_other_rules(session, rules.version)
    for start in range(0, len(leads), 1000):
        push(runtime.redis, runtime.queue_name, leads[start : start + 1000])
    runtime.redis.set(key, rules.version)
    if leads:
        log.info("rules version applied to open clocks", extra={"rules_version": rules.version, "leads": len(leads)})
    return len(leads)


def _step(report: ReconcileReport, name: str, run) -> None:
    """Run one step of the pass; a failed step is logged and the pass goes on with the next."""
    try:
        run(report)
    except RedisError as exc:
        log.warning("reconciler step waits for Redis", extra={"step": name, "error": type(exc).__name__})
    except Exception:
        log.exception("reconciler step failed", extra={"step": name})


def _apply_lost_events(runtime: Runtime, report: ReconcileReport, step_aside: bool = False) -> None:
    with runtime.db.session() as session:
        lost_leads = unprocessed_leads(session, runtime.now() - EVENT_GRACE)
    size = batch_size(runtime)
    for start in range(0, len(lost_leads), size):
        if step_aside:  # as the pumps do: due timers first, then the backlog
            wait_for_timers(runtime, STEP_ASIDE_S)  # a lead that cannot be applied is quarantined, never stops the pass
        report.events_applied += len(apply_leads(runtime, lost_leads[start : start + size]))


REARM_CHUNK = 10_000
"""Clocks compared with Redis per round trip."""


def rearm_timers(runtime: Runtime) -> tuple[int, int]:
    """Arm every clock due within the horizon whose timer Redis lost, and bring forward any
    timer armed later than its clock's ``next_fire_at``; returns ``(armed, due already)``.

    A timer that is present (or leased to a timer loop) at the right time or earlier is left
    alone: firing early changes nothing, the loop reloads the clock and settles the timer. A clock
    set aside (:mod:`sla_guard.timers.failures`) is armed again once its lead left quarantine.
    """
    now = runtime.now()
    horizon = now + timedelta(seconds=runtime.settings.arm_horizon_s)
    with runtime.db.session() as session:
        wanted = clocks_to_arm(session, horizon)
    armed = due = 0
    set_aside = score_of(SET_ASIDE_AT)
    for start in range(0, len(wanted), REARM_CHUNK):
        chunk = wanted[start : start + REARM_CHUNK]
        scores = armed_at(runtime.redis, runtime.queue_name, [clock_id for clock_id, _lead, _at in chunk])
        missing = {clock_id: at for clock_id, _lead, at in chunk if clock_id not in scores}
        later = {
            clock_id: at
            for clock_id, _lead, at in chunk
            if clock_id in scores and at > now and at.timestamp() + 0.001 < scores[clock_id] < set_aside
        }
        released = _released(
            runtime,
            [(clock_id, lead_id, at) for clock_id, lead_id, at in chunk if scores.get(clock_id, 0) >= set_aside],
        )
        arm_missing(runtime.redis, runtime.queue_name, missing)
        bring_forward(runtime.redis, runtime.queue_name, later)
        arm(runtime.redis, runtime.queue_name, released)
        missing.update(released)
        due += sum(1 for at in missing.values() if at <= now)
        armed += len(missing) - sum(1 for at in missing.values() if at <= now) + len(later)
    return armed, due


def _released(runtime: Runtime, set_aside: list[tuple[int, str, datetime]]) -> dict[int, datetime]:
    """Of the clocks set aside (their firing kept failing), those whose lead is out of
    quarantine again (retried, or a new event applied): armed again at their instant."""
    if not set_aside:
        return {}
    with runtime.db.session() as session:
        held = set(quarantined_ids(session))
    return {clock_id: at for clock_id, lead_id, at in set_aside if lead_id not in held}


def _arm_timers(runtime: Runtime, report: ReconcileReport) -> None:
    report.timers_armed, report.timers_fired = rearm_timers(runtime)


def _requeue_outbox(runtime: Runtime, report: ReconcileReport) -> None:
    overdue_before = runtime.now()  # a retry whose time has come goes now, scheduler or not
    report.tasks_retried = TASKS.requeue_due(runtime, overdue_before) + CLOSES.requeue_due(runtime, overdue_before)
    report.alerts_retried = ALERTS.requeue_due(runtime, overdue_before)
    report.lookups_retried = LOOKUPS.requeue_due(runtime, overdue_before)
    report.crm_pushes_retried = sum(kind.requeue_due(runtime, overdue_before) for kind in ITEM_KINDS)


def reconcile(runtime: Runtime, step_aside: bool = False) -> ReconcileReport:
    """One pass. Every step runs whatever another step did: one bad lead, clock or outbox item
    is logged (a lead is quarantined) and never stops the pass. With ``step_aside`` (in a
    worker) applying lost events waits while timers are due or being fired."""
    report = ReconcileReport()

    def recompute(report: ReconcileReport) -> None:
        report.leads_recomputed = apply_rules_version(runtime)

    def digests(report: ReconcileReport) -> None:
        report.digests_queued = queue_digests(runtime, runtime.now())

    _step(report, "rules version", recompute)
    _step(report, "lost events", lambda report: _apply_lost_events(runtime, report, step_aside))
    _step(report, "timers", lambda report: _arm_timers(runtime, report))
    _step(report, "outbox", lambda report: _requeue_outbox(runtime, report))
    _step(report, "digests", digests)
    if any(vars(report).values()):
        log.info("reconciled", extra=vars(report))
    return report


def reconcile_once(runtime: Runtime, lock_ms: int, step_aside: bool = False) -> ReconcileReport | None:
    """Run :func:`reconcile` unless another worker holds the lock; None when skipped."""
    try:
        if not runtime.redis.set(LOCK_KEY.format(queue=runtime.queue_name), "1", nx=True, px=lock_ms):
            return None
    except RedisError as exc:
        log.warning("reconciler waits for Redis", extra={"error": type(exc).__name__})
        return None
    try:
        return reconcile(runtime, step_aside)
    finally:
        try:
            runtime.redis.delete(LOCK_KEY.format(queue=runtime.queue_name))
        except RedisError:
            pass
