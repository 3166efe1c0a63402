"""The outbox's shared mechanics: job ids from numbers only, jobs enqueued by reference, one
backoff policy, and give-up for any kind (a digest here) scheduling its own retry and raising
an ops alert, while a failing ops alert raises no other."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from sla_guard.outbox.base import Retry, doubling
from sla_guard.outbox.delivery import OPS_ALERTS
from sla_guard.outbox.digests import DIGESTS
from sla_guard.queueing import enqueue, job_id
from sla_guard.store.models import DigestRow, OutboxItemRow
from sla_guard.timers.reconciler import reconcile

MONDAY_0900 = datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC)


# --- pure -----------------------------------------------------------------------------------


def test_job_ids_are_made_of_numbers_only():
    assert job_id("sla-guard", "loss-reason", 42, 1) == "sla-guard-loss-reason-42-1"
    with pytest.raises(TypeError):
        job_id("sla-guard", "loss-reason", "amocrm-leads-status-1-2024-09-17 16:31:40", 1)
    with pytest.raises(ValueError):
        job_id("sla-guard", "Loss Reason", 42)


def test_only_jobs_are_enqueued_and_only_by_reference(redis_conn, queue_name):
    with pytest.raises(TypeError, match="not a job"):
        enqueue(redis_conn, "sla_guard.outbox.delivery.deliver_alert", 1, queue_name=queue_name)
    with pytest.raises(TypeError, match="not a job"):
        enqueue(redis_conn, print, 1, queue_name=queue_name)
    queued = enqueue(redis_conn, DIGESTS.job, 7, job_id=job_id(queue_name, "digest", 7, 1), queue_name=queue_name)
    assert queued.func_name == "sla_guard.outbox.digests.deliver_digest_job"
    assert (queued.result_ttl, queued.failure_ttl, queued.timeout) == (0, 7 * 24 * 3600, 60)
    queued.delete()


def test_every_kind_tells_the_ops_channels_when_it_gives_up_and_ops_alerts_tell_nobody():
    from sla_guard.ingest.crm_sync import LOOKUPS, LOSS_REASONS
    from sla_guard.outbox.crm_reassign import REASSIGNMENTS
    from sla_guard.outbox.delivery import ALERTS
    from sla_guard.outbox.follow_up_tasks import CLOSES, TASKS

    kinds = (ALERTS, DIGESTS, TASKS, CLOSES, LOOKUPS, LOSS_REASONS, REASSIGNMENTS)
    assert {kind.name: kind.ops for kind in kinds} == dict.fromkeys([kind.name for kind in kinds], OPS_ALERTS)
    assert OPS_ALERTS.ops is None


def test_backoff_is_a_value():
    assert doubling(2, 600) == (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 600.0)
    policy = Retry(8, doubling(5, 600))
    assert [policy.wait(n) for n in (1, 2, 3, 7, 8, 20)] == [5.0, 10.0, 20.0, 320.0, 600.0, 600.0]


# --- a digest as any kind -----------------------------------------------------------------


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        channels:
          sink: {type: webhook, url: "${SINK_URL}"}
          ops-hook: {type: webhook, url: "${OPS_URL}"}
        people:
          anna: {manager: olga, team: inbound, channels: [sink]}
          olga: {team: inbound, channels: [sink]}
        teams:
          inbound: {head: olga, members: [anna]}
        digests: {daily_at: "09:00", weekly_on: mon}
        ops: {notify: [ops-hook]}
        rules:
          - name: quick
            first_touch: {within: 15m, escalate: [{after: 0m, notify: [owner]}]}
    """)


@pytest.fixture
def hooks(httpserver, monkeypatch):
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/sink"))
    monkeypatch.setenv("OPS_URL", httpserver.url_for("/ops"))
    return httpserver


def posted(server, path: str) -> list[dict]:
    return [json.loads(request.data) for request, _ in server.log if request.path == path]


def rows(runtime, model, *where):
    with runtime.db.session() as session:
        return session.execute(select(model).where(*where)).scalars().all()


def test_a_digest_schedules_its_own_retry(hooks, runtime, clock, run_worker):
    hooks.expect_request("/sink").respond_with_data("busy", status=503)
    clock.current = MONDAY_0900
    reconcile(runtime)
    run_worker(runtime)
    [digest] = rows(runtime, DigestRow, DigestRow.kind == "weekly")
    assert (digest.status, digest.attempts, digest.last_error) == ("pending", 1, "HTTP 503")
    registry = ScheduledJobRegistry(runtime.queue_name, connection=runtime.redis)
    retry = DIGESTS.job_id(runtime.queue_name, digest.id, 2)
    assert registry.get_job_ids() == [retry]
    assert registry.get_scheduled_time(retry).timestamp() == digest.claimed_until.timestamp()


def test_a_digest_given_up_raises_an_ops_alert_once(hooks, runtime, clock, run_worker):
    hooks.expect_request("/sink").respond_with_data("gone", status=404)
    hooks.expect_request("/ops").respond_with_data("ok")
    clock.current = MONDAY_0900
    reconcile(runtime)
    run_worker(runtime)
    [digest] = rows(runtime, DigestRow, DigestRow.kind == "weekly")
    assert (digest.status, digest.last_error) == ("failed", "HTTP 404")
    [ops] = posted(hooks, "/ops")
    assert (ops["kind"], ops["failed_kind"], ops["failed_id"], ops["error"]) == (
        "ops.work_failed",
        "digest",
        digest.id,
        "HTTP 404",
    )
    assert f"digest delivery #{digest.id}" in ops["text"] and "HTTP 404" in ops["text"]
    [item] = rows(runtime, OutboxItemRow, OutboxItemRow.kind == OPS_ALERTS.name)
    assert (item.status, item.outcome) == ("done", "delivered")
    clock.advance(minutes=5)
    reconcile(runtime)
    run_worker(runtime)
    assert len(posted(hooks, "/ops")) == 1 and len(posted(hooks, "/sink")) == 1


def test_a_failing_ops_alert_raises_no_other(hooks, runtime, clock, run_worker):
    hooks.expect_request("/sink").respond_with_data("gone", status=404)
    hooks.expect_request("/ops").respond_with_data("gone", status=410)
    clock.current = MONDAY_0900
    reconcile(runtime)
    run_worker(runtime)
    [item] = rows(runtime, OutboxItemRow)
    assert (item.kind, item.status, item.attempts, item.last_error) == ("ops", "failed", 1, "HTTP 410")
    clock.advance(minutes=5)
    reconcile(runtime)
    run_worker(runtime)
    assert len(rows(runtime, OutboxItemRow)) == 1
    assert len(posted(hooks, "/ops")) == 1 and len(posted(hooks, "/sink")) == 1
