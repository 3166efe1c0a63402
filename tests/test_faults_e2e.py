"""Faults end to end, with the real `sla-guard serve` and `sla-guard worker` processes.

Each test names the promise it holds. Redis is a private `redis-server` the test stops and
starts; PostgreSQL is reached through a TCP proxy the test cuts (the shared servers are never
stopped). SLAs are seconds long; the managers' hook is a local HTTP server.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.support.faults import CuttableProxy, SlowSink
from tests.support.processes import PATIENCE_S, Stack, lead_created, seconds_rules, wait_for
from tests.support.webhooks import poison_payload, received, store_in_inbox

pytestmark = pytest.mark.e2e

FIRST_TOUCH_S = 3


@pytest.fixture
def start_faulty_stack(start_stack, sink):
    """``start_faulty_stack(database_url, redis_url, sink_url=None)``: `serve` and `worker`
    against the given database and Redis (a proxy the test cuts, a server it kills)."""

    def start(database_url: str, redis_url: str, sink_url: str | None = None) -> Stack:
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        return start_stack(seconds_rules(FIRST_TOUCH_S), **env, **({"SINK_URL": sink_url} if sink_url else {}))

    return start


@pytest.fixture
def pg_proxy(db_url):
    """A cuttable TCP path to the test's PostgreSQL database; yields its database URL."""
    proxy = CuttableProxy(5432)
    yield proxy, db_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    proxy.close()


def alerts_by_lead(httpserver) -> Counter[str]:
    return Counter(alert["lead_id"] for alert in received(httpserver))


def every_lead_alerted_once(httpserver, stack: Stack, lead_ids: list[str]) -> None:
    """Every lead alerted, then (after more reconciler passes, with nothing left to do) still
    exactly once each."""
    assert wait_for(lambda: set(lead_ids) <= set(alerts_by_lead(httpserver)), 2 * PATIENCE_S), (
        sorted(set(lead_ids) - set(alerts_by_lead(httpserver))),
        stack.logs("worker")[-5000:],
    )
    assert stack.quiet_after(passes=2), stack.logs("worker")[-5000:]
    counts = alerts_by_lead(httpserver)
    assert {lead_id: counts[lead_id] for lead_id in lead_ids} == dict.fromkeys(lead_ids, 1)


def store_poison(database_url: str, lead_id: str) -> None:
    """An event of :func:`poison_payload` in the inbox of the stack's database."""
    engine = create_engine(database_url)
    with Session(engine) as session, session.begin():
        payload = poison_payload("poison", {"id": lead_id, "owner": "anna"})
        store_in_inbox(session, lead_id, datetime.now(UTC), payload, "poison")
    engine.dispose()


def test_a_poison_event_among_good_ones_never_stops_escalations(start_faulty_stack, db_url, redis_url, httpserver):
    """Promise: a lead whose events cannot be applied is quarantined; every other lead is
    still escalated on time, by the pump and by the reconciler (Redis lost the doorbell)."""
    stack = start_faulty_stack(db_url, redis_url)
    good = [f"good-{n}" for n in range(6)]
    assert stack.post([lead_created(lead_id) for lead_id in good[:3]]).status_code == 202
    store_poison(db_url, "poison")  # no doorbell: the reconciler finds it
    assert stack.post([lead_created(lead_id) for lead_id in good[3:]]).status_code == 202

    every_lead_alerted_once(httpserver, stack, good)
    assert wait_for(lambda: stack.api("/api/quarantine").json()["count"] == 1)
    [quarantined] = stack.api("/api/quarantine").json()["leads"]
    assert (quarantined["lead_id"], quarantined["error"]) == ("poison", "OverflowError")
    assert "sla_guard_quarantined_leads 1.0" in requests.get(stack.base_url + "/metrics", timeout=10).text
    assert stack.worker.poll() is None  # the worker still runs
    later = lead_created("after-the-poison")
    assert stack.post(later).status_code == 202
    every_lead_alerted_once(httpserver, stack, ["after-the-poison"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_redis_stopped_and_restarted_during_ingest_loses_no_lead(
    start_faulty_stack, db_url, killable_redis, httpserver
):
    """Promise: what is acknowledged is never lost. With Redis down, webhooks still answer
    202 (events are in the database); once it is back every lead is escalated exactly once."""
    stack = start_faulty_stack(db_url, killable_redis.url)
    before = [f"before-{n}" for n in range(3)]
    during = [f"during-{n}" for n in range(3)]
    after = [f"after-{n}" for n in range(3)]
    for lead_id in before:
        assert stack.post(lead_created(lead_id)).status_code == 202
    killable_redis.kill()
    for lead_id in during:
        assert stack.post(lead_created(lead_id)).status_code == 202
    assert requests.get(stack.base_url + "/readyz", timeout=10).status_code == 503
    time.sleep(6)  # long enough for RQ's own loop to give up on Redis
    killable_redis.start()
    for lead_id in after:
        assert stack.post(lead_created(lead_id)).status_code == 202
    every_lead_alerted_once(httpserver, stack, before + during + after)
    assert stack.worker.poll() is None  # the worker outlived the outage


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_cut_during_ingest_answers_503_and_loses_nothing(
    start_faulty_stack, pg_proxy, redis_url, httpserver
):
    """Promise: while the database is unreachable every endpoint that needs it answers 503
    (the CRM retries); afterwards nothing acknowledged is lost and nothing is doubled."""
    proxy, database_url = pg_proxy
    stack = start_faulty_stack(database_url, redis_url)
    before = [f"before-{n}" for n in range(3)]
    retried = [f"retried-{n}" for n in range(3)]
    for lead_id in before:
        assert stack.post(lead_created(lead_id)).status_code == 202
    proxy.cut()
    events = [lead_created(lead_id) for lead_id in retried]
    for event in events:
        assert stack.post(event).status_code == 503
    assert requests.get(stack.base_url + "/metrics", timeout=10).status_code == 503
    assert stack.api("/api/leads").status_code == 503
    assert requests.get(stack.base_url + "/readyz", timeout=10).status_code == 503
    time.sleep(2)
    proxy.restore()
    assert wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=10).status_code == 200)
    for event in events:  # the CRM's retry
        assert stack.post(event).status_code == 202
        assert stack.post(event).json()["duplicates"] == [event["event_id"]]
    every_lead_alerted_once(httpserver, stack, before + retried)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_cut_during_alert_delivery_loses_no_alert_and_sends_no_duplicate(
    start_faulty_stack, pg_proxy, redis_url, httpserver
):
    """Promise: every escalation is delivered once, even when the database goes away just as
    the deadlines fall due."""
    proxy, database_url = pg_proxy
    stack = start_faulty_stack(database_url, redis_url)
    leads = [f"lead-{n}" for n in range(5)]
    accepted_at = time.monotonic()
    assert stack.post([lead_created(lead_id) for lead_id in leads]).status_code == 202
    assert wait_for(lambda: stack.api("/api/leads?status=open").json().get("leads"))
    time.sleep(max(0.0, FIRST_TOUCH_S - 0.5 - (time.monotonic() - accepted_at)))
    proxy.cut()  # the deadlines fall due while the database is away
    time.sleep(5)
    proxy.restore()
    every_lead_alerted_once(httpserver, stack, leads)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_worker_killed_mid_delivery_loses_no_alert(start_faulty_stack, db_url, redis_url):
    """Promise: an alert whose sender died mid-send is delivered by another worker once its
    claim runs out (60 s); the hook may see it a second time, never a third, never not at all."""
    sink = SlowSink(slow=1, delay_s=5)
    try:
        stack = start_faulty_stack(db_url, redis_url, sink.url)
        assert stack.post(lead_created("mid-send")).status_code == 202
        assert sink.started.wait(PATIENCE_S), stack.logs("worker")[-3000:]
        stack.kill_worker()  # while the hook is still answering
        stack.start_worker()
        lead = {}

        def delivered() -> bool:
            lead.update(stack.api("/api/leads/mid-send").json())
            return [alert["status"] for alert in lead.get("alerts", [])] == ["delivered"]

        assert wait_for(delivered, 3 * PATIENCE_S), (lead, stack.logs("worker")[-3000:])
        assert 1 <= len(sink.received) <= 2
        assert {alert["lead_id"] for alert in sink.received} == {"mid-send"}
    finally:
        sink.close()
