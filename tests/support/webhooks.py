"""Fixtures for driving sla-guard as a sender and an operator would: the secrets of the test
app, signed generic webhooks, events, a burst run of the real RQ worker, an injectable clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import select
from sqlalchemy.orm import Session

from sla_guard.ingest.processing import drain
from sla_guard.runtime import activated
from sla_guard.security import sign
from sla_guard.store.models import ClockRow, EventRow
from sla_guard.timers.firing import fire_due
from tests.support.firing import run_timer

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
HOT_LEAD = {
    "source": "website",
    "priority": "hot",
    "owner": "anna",
    "team": "inbound",
    "name": "ACME",
    "url": "https://crm.example/leads/1001",
}
"""A hot website lead of anna's (team inbound): the test rules give it 15 minutes to a first touch."""
API_TOKEN = "test-api-token-0123456789abcdef"


class FakeClock:
    """An injectable clock: starts at a fixed aware UTC instant and moves only when told."""

    def __init__(self, start: datetime):
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta) -> datetime:
        self.current += timedelta(**delta)
        return self.current


@pytest.fixture
def webhook_secret() -> str:
    """``SLA_GUARD_WEBHOOK_SECRET`` of the test app and stacks."""
    return WEBHOOK_SECRET


@pytest.fixture
def api_token() -> str:
    """``SLA_GUARD_API_TOKEN`` of the test app and stacks."""
    return API_TOKEN


@pytest.fixture
def auth(api_token) -> dict:
    """The headers of an API client holding the token."""
    return {"Authorization": f"Bearer {api_token}"}


@pytest.fixture
def make_clock():
    """``make_clock(start)``: a :class:`FakeClock` starting at ``start``."""
    return FakeClock


@pytest.fixture
def clock(make_clock):
    return make_clock(datetime.now(UTC).replace(microsecond=0))


def make_event(event_id: str, kind: str, at: datetime, lead_id: str = "L-1001", **extra) -> dict:
    """A generic event: ``make_event(event_id, type, at, lead_id="L-1001", lead={...}, **fields)``."""
    lead = {"id": lead_id, **extra.pop("lead", {})}
    return {"event_id": event_id, "type": kind, "occurred_at": at.isoformat(), "lead": lead, **extra}


def sign_and_post(client, payload, now: datetime, secret: str = WEBHOOK_SECRET, headers: dict | None = None):
    """POST the payload (JSON, or a body of bytes sent as they are) to the generic webhook,
    signed at ``now`` as a sender holding the secret would."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(
        "/webhooks/generic",
        data=body,
        content_type="application/json",
        headers={"X-SLA-Guard-Signature": sign(secret, body, int(now.timestamp())), **(headers or {})},
    )


def work_until_idle(runtime) -> None:
    """Do what `sla-guard worker` does, in this process, until nothing is left: apply the leads
    the web reported (the pump), fire the clocks due by the runtime's clock (the timer loop) and
    run the real RQ worker over everything queued."""
    queues = [Queue(runtime.queue_name, connection=runtime.redis)]
    with activated(runtime):
        while drain(runtime) + fire_due(runtime) or any(queue.count for queue in queues):
            SimpleWorker(queues, connection=runtime.redis).work(burst=True, logging_level="WARNING")


@pytest.fixture
def sink_url(httpserver, monkeypatch) -> str:
    """The managers' webhook the rules' `sink` channel posts to: ``SINK_URL`` is set to the local
    server's ``/alerts`` (for the app and runtime of the test; end-to-end stacks get it too)."""
    url = httpserver.url_for("/alerts")
    monkeypatch.setenv("SINK_URL", url)
    return url


@pytest.fixture
def sink(httpserver, sink_url):
    """The managers' webhook at :func:`sink_url`, answering 200 and keeping what it receives
    (read it with :func:`received`)."""
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    return httpserver


def received(server) -> list[dict]:
    """The alerts the local server received at ``/alerts``, oldest first."""
    return [json.loads(request.data) for request, _ in list(server.log) if request.path == "/alerts"]


@pytest.fixture
def event():
    """``event(event_id, type, at, lead_id="L-1001", lead={...}, **fields)``: a generic event."""
    return make_event


@pytest.fixture
def post_signed(webhook_secret):
    """``post_signed(client, payload, now, secret=…, headers=…)``: POST the payload (JSON, or
    bytes sent as they are) to the generic webhook, signed at ``now`` as a sender holding the
    secret would."""
    return sign_and_post


@pytest.fixture
def first_breach(event, post_signed, run_worker):
    """``first_breach(client, runtime, clock, lead=HOT_LEAD)``: a lead left untouched until the
    first level of its first-touch ladder fired (16 minutes on); returns its clock's id."""

    def breach(client, runtime, clock, lead: dict = HOT_LEAD) -> int:
        post_signed(client, event("e1", "lead.created", clock(), lead=lead), clock())
        run_worker(runtime)
        with runtime.db.session() as session:
            [clock_id] = session.execute(select(ClockRow.id)).scalars().all()
        clock.advance(minutes=16)
        run_timer(runtime, clock_id)
        return clock_id

    return breach


def store_in_inbox(session: Session, lead_id: str, at: datetime, payload: str, event_id: str) -> None:
    """A ``lead.created`` row written straight into the inbox with ``payload`` stored as given, as
    a damaged row or an older sla-guard's would be: nothing checks it and no doorbell rings."""
    session.add(
        EventRow(
            source="generic",
            event_id=event_id,
            lead_id=lead_id,
            type="lead.created",
            occurred_at=at,
            received_at=at,
            payload=payload,
        )
    )


def poison_payload(event_id: str, lead: dict) -> str:
    """An event dated in year 9999, as an older sla-guard accepted it: applying it overflows."""
    return json.dumps(
        {"event_id": event_id, "type": "lead.created", "occurred_at": "9999-12-31T23:59:59Z", "lead": lead}
    )


@pytest.fixture
def store_unreadable_event():
    """``store_unreadable_event(runtime, lead_id, at)``: an event in the inbox whose stored payload
    can no longer be read back, as a damaged row would be; applying its lead fails."""

    def store(runtime, lead_id: str, at: datetime) -> None:
        with runtime.db.session() as session:
            store_in_inbox(session, lead_id, at, "{not json", "broken")

    return store


@pytest.fixture
def run_worker():
    """``run_worker(runtime)``: :func:`work_until_idle`, the worker's work done in this process."""
    return work_until_idle
