"""Daily digests and weekly SLA summaries: recorded once per period, then delivered with retries.

The reconciler calls :func:`queue_digests` on every pass. When a digest's local time has come
(``digests.daily_at``, ``digests.weekly_on`` + ``weekly_at``), one row per (kind, period,
recipient, channel) is written with its text; the unique constraint makes that once however
many workers try. Rows are then delivered, as an outbox kind (:mod:`sla_guard.outbox.base`),
through the same channels as alerts: transient failures are retried with backoff and scheduled,
permanent ones fail the row and raise an ops alert.
A manager in their quiet hours gets the digest when those end. A daily digest with nothing
overdue is recorded as ``skipped`` and not sent.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from sla_guard import runtime as runtime_module
from sla_guard.outbox.delivery import OPS_ALERTS, ChannelDelivery
from sla_guard.outbox.notify.digest_texts import (
    Overdue,
    Period,
    Scope,
    daily_text,
    due_periods,
    managers,
    subject_of,
    summarize,
    weekly_text,
)
from sla_guard.outbox.notify.routing import person_locale, person_quiet_until
from sla_guard.queueing import job
from sla_guard.reports import sla as sla_report
from sla_guard.reports.query import ReportQuery, Visibility
from sla_guard.runtime import Runtime
from sla_guard.store.digests import escalated_owners, insert_digest, overdue_clocks, period_recorded
from sla_guard.store.leads import lead_fields
from sla_guard.store.models import DigestRow

log = logging.getLogger("sla_guard.outbox.digests")


def _channels_of(runtime: Runtime, person: str) -> tuple[str, ...]:
    rules = runtime.rules.current()
    spec = rules.people.get(person)
    names = [
        name for name in (spec.channels if spec else ()) if getattr(rules.channels.get(name), "type", None) != "crm"
    ]
    return tuple(names) or ("log",)


def _overdue(session, now: datetime) -> list[Overdue]:
    return [
        Overdue(lead_fields(lead), clock.name, clock.rule_name, clock.due_at)
        for clock, lead in overdue_clocks(session, now)
    ]


def _week(session, period: Period, now: datetime):
    escalations = escalated_owners(session, period.start, period.at)
    overdue_now = [(item.lead.get("owner"), item.lead.get("team")) for item in _overdue(session, now)]
    return escalations, overdue_now


def _weekly_summary(session, period: Period, scope: Scope | None, escalations, overdue_now):
    """The week's first-touch numbers from the ``sla`` report, as they stood at the digest's time."""
    visible = None if scope is None else Visibility(scope.people, scope.teams)
    query = ReportQuery(period.start, period.at, period.at, visibility=visible)
    connection = session.connection()
    total = sla_report.compute(connection, query, None)
    return summarize(
        total[0] if total else None, sla_report.compute(connection, query, "owner"), escalations, overdue_now, scope
    )


def _rows(runtime: Runtime, session, period: Period, now: datetime) -> list[dict]:
    """Every digest row of ``period``: recipient, channel, payload, status, not-before."""
    rules = runtime.rules.current()
    spec = rules.spec.digests
    zone = (spec.timezone if spec else None) or rules.spec.timezone
    out = []

    def add(recipient: str, channel: str, text: str, extra: dict, skipped: bool = False) -> None:
        payload = {
            "alert_id": None,
            "digest_id": None,
            "kind": f"digest.{period.kind}",
            "period": period.key,
            "lead_id": None,
            "recipient": recipient or None,
            "role": "digest",
            "channel": channel,
            "fired_at": now.isoformat().replace("+00:00", "Z"),
            "text": text,
            "subject": subject_of(text),
            **extra,
        }
        wait = person_quiet_until(rules, recipient, now) if recipient else None
        out.append(
            {
                "recipient": recipient,
                "channel": channel,
                "payload": payload,
                "status": "skipped" if skipped else "pending",
                "claimed_until": wait,
            }
        )

    staff = managers(rules)
    if period.kind == "daily":
        overdue = _overdue(session, now)
        for person, scope in staff.items():
            mine = [item for item in overdue if scope.covers(item.lead.get("owner"), item.lead.get("team"))]
            text = daily_text(mine, person_locale(rules, person), period.key, now)
            leads = [
                {
                    **item.lead,
                    "clock": item.clock,
                    "rule": item.rule,
                    "due_at": item.due_at.isoformat().replace("+00:00", "Z"),
                }
                for item in mine
            ]
            for channel in _channels_of(runtime, person):
                add(person, channel, text, {"leads": leads}, skipped=not mine)
        return out
    escalations, overdue_now = _week(session, period, now)
    for person, scope in staff.items():
        summary = _weekly_summary(session, period, scope, escalations, overdue_now)
        text = weekly_text(summary, person_locale(rules, person), period, zone, team_scope=True)
        for channel in _channels_of(runtime, person):
            add(person, channel, text, {"summary": summary.as_dict()})
    if spec and spec.weekly_notify:
        summary = _weekly_summary(session, period, None, escalations, overdue_now)
        text = weekly_text(summary, rules.spec.locale, period, zone, team_scope=False)
        for channel in dict.fromkeys(spec.weekly_notify):
            add("", channel, text, {"summary": summary.as_dict()})
    return out


def prepare(runtime: Runtime, now: datetime) -> list[int]:
    """Record the digests due at ``now`` that are not recorded yet; return the new pending rows' ids."""
    rules = runtime.rules.current()
    done: set = runtime.__dict__.setdefault("_digest_periods_done", set())
    created: list[int] = []
    for period in due_periods(rules.spec.digests, rules.spec.timezone, now):
        if (period.kind, period.key) in done:
            continue
        with runtime.db.session() as session:
            recorded = period_recorded(session, period.kind, period.key)
            rows = [] if recorded else _rows(runtime, session, period, now)
            for row in rows:
                digest_id = insert_digest(
                    session,
                    kind=period.kind,
                    period=period.key,
                    recipient=row["recipient"],
                    channel=row["channel"],
                    payload=row["payload"],
                    status=row["status"],
                    now=now,
                    not_before=row["claimed_until"],
                )
                if digest_id is not None and row["status"] == "pending":
                    created.append(digest_id)
        done.add((period.kind, period.key))
        if rows:
            log.info("digests recorded", extra={"kind": period.kind, "period": period.key, "rows": len(rows)})
    return created


class Digests(ChannelDelivery):
    """Daily digests and weekly summaries: retried, scheduled and given up like every outgoing item."""

    name = "digest"
    what = "digest delivery"
    model = DigestRow
    sent_column = "sent_at"
    logger = log
    grace = timedelta(0)

    def context(self, row: DigestRow) -> dict:
        return {"digest_id": row.id, "channel": row.channel, "attempt": row.attempts}


@job()
def deliver_digest_job(digest_id: int) -> str:
    """Job: one delivery attempt of a digest."""
    return DIGESTS.run(runtime_module.current(), digest_id)


DIGESTS = Digests(deliver_digest_job, ops=OPS_ALERTS)


def deliver_digest(runtime: Runtime, digest_id: int) -> str:
    """Try to deliver one digest once; return its status afterwards."""
    return DIGESTS.run(runtime, digest_id)


def waiting_digests(runtime: Runtime, now: datetime, limit: int = 500) -> list[tuple[int, int]]:
    """Digests due for a (re)try: ``(digest_id, attempts)``."""
    with runtime.db.session() as session:
        return DIGESTS.due(session, now, limit)


def queue_digests(runtime: Runtime, overdue_before: datetime | None = None) -> int:
    """Record due digests and queue every digest waiting for delivery; the number queued.

    Never raises: a digest's trouble must not stop the reconciler's other work.
    """
    try:
        prepare(runtime, runtime.now())
        return DIGESTS.requeue_due(runtime, overdue_before or runtime.now())
    except RedisError as exc:
        log.warning("digests wait for Redis", extra={"error": type(exc).__name__})
    except Exception:
        log.exception("digest pass failed")
    return 0


__all__ = ["Scope", "deliver_digest", "prepare", "queue_digests", "waiting_digests"]
