"""Prometheus metrics.

Counters of what the web processes see (events accepted and rejected) are process-local, and
aggregated across gunicorn workers through ``PROMETHEUS_MULTIPROC_DIR`` (``sla-guard serve``
sets it). What lives in the database (open clocks, escalations, alerts, scheduler lag) is read
from it at scrape time, so every process reports the same numbers as the API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis import Redis
from redis.exceptions import RedisError

from sla_guard.store.stats import operating_counts

EVENTS_ACCEPTED = Counter("sla_guard_events_accepted_total", "Webhook events stored", ["source"])
EVENTS_DUPLICATE = Counter("sla_guard_events_duplicate_total", "Webhook events already stored", ["source"])
EVENTS_REJECTED = Counter("sla_guard_events_rejected_total", "Webhook requests refused", ["source", "reason"])
EVENTS_IGNORED = Counter(
    "sla_guard_events_ignored_total", "CRM notifications acknowledged but not used", ["source", "kind"]
)
INGEST_SECONDS = Histogram(
    "sla_guard_ingest_seconds",
    "Time from request to acknowledgement",
    ["source"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class DatabaseCollector:
    """Numbers read from the database at scrape time."""

    def __init__(self, database):
        self.database = database

    def collect(self):
        now = datetime.now(UTC)
        with self.database.session() as session:
            counts = operating_counts(session, now)
        open_clocks, overdue, backlog = counts.open_clocks, counts.overdue_clocks, counts.unprocessed_events
        escalations, alerts, oldest_due = counts.escalations_by_kind, counts.alerts_by_status, counts.oldest_due_timer
        quarantined = counts.quarantined_leads
        gauge = GaugeMetricFamily("sla_guard_open_clocks", "SLA clocks still running", labels=["state"])
        gauge.add_metric(["running"], open_clocks - overdue)
        gauge.add_metric(["overdue"], overdue)
        yield gauge
        counter = CounterMetricFamily("sla_guard_escalations", "Escalations recorded", labels=["kind"])
        for kind, count in escalations:
            counter.add_metric([kind], count)
        yield counter
        counter = CounterMetricFamily("sla_guard_alerts", "Alerts by delivery status", labels=["status"])
        for status, count in alerts:
            counter.add_metric([status], count)
        yield counter
        lag = (now - oldest_due).total_seconds() if oldest_due else 0.0
        yield GaugeMetricFamily(
            "sla_guard_scheduler_lag_seconds", "Age of the oldest timer that is due but has not fired", value=lag
        )
        yield GaugeMetricFamily(
            "sla_guard_events_unprocessed",
            "Accepted events waiting to be applied (a quarantined lead's are not: see sla_guard_quarantined_leads)",
            value=backlog,
        )
        yield GaugeMetricFamily(
            "sla_guard_quarantined_leads", "Leads set aside because their events cannot be applied", value=quarantined
        )


class RedisCollector:
    """Numbers every worker keeps in Redis, read at scrape time by ``read(redis, namespace)``
    (none while Redis is away)."""

    def __init__(self, read: Callable[[Redis, str], Any], redis: Redis, namespace: str):
        self.read = read
        self.redis = redis
        self.namespace = namespace

    def families(self, found):
        raise NotImplementedError

    def collect(self):
        try:
            found = self.read(self.redis, self.namespace)
        except RedisError:
            return
        yield from self.families(found)


class PaceCollector(RedisCollector):
    """The pace of CRM calls, per CRM, as every worker counted it in Redis (read by
    :func:`sla_guard.outbox.pacing.pace_stats`)."""

    NAMES = {
        "calls": ("sla_guard_crm_calls", "CRM REST calls made"),
        "waits": ("sla_guard_crm_pace_waits", "CRM calls that waited for their turn"),
        "wait_seconds": ("sla_guard_crm_pace_wait_seconds", "Seconds CRM calls waited for their turn"),
        "deferred": ("sla_guard_crm_calls_deferred", "CRM calls put off because their turn was too far"),
        "rate_limited": ("sla_guard_crm_rate_limited", "Answers of a CRM saying too many requests"),
    }

    def families(self, stats):
        for key, (name, documentation) in self.NAMES.items():
            counter = CounterMetricFamily(name, documentation, labels=["crm"])
            for crm, values in sorted(stats.items()):
                counter.add_metric([crm], values[key])
            yield counter


def render(database, redis_collectors: Iterable[RedisCollector] = ()) -> bytes:
    """The /metrics body: process counters (all gunicorn workers), database numbers, and what
    the workers keep in Redis (``redis_collectors``)."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
        process_part = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        process_part = generate_latest(REGISTRY)
    db_registry = CollectorRegistry()
    db_registry.register(DatabaseCollector(database))
    for collector in redis_collectors:
        db_registry.register(collector)
    return process_part + generate_latest(db_registry)


class TimerCollector(RedisCollector):
    """Clocks set aside because their firing kept failing (read by
    :func:`sla_guard.ingest.processing.set_aside_count`)."""

    def families(self, count):
        yield GaugeMetricFamily(
            "sla_guard_timers_set_aside",
            "Clocks whose firing kept failing, set aside with their lead in quarantine until it is retried",
            value=count,
        )
