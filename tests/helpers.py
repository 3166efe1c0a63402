"""Helpers for tests: signed generic webhook requests and a burst run of the real RQ worker."""

from __future__ import annotations

import json
from datetime import datetime

from rq import Queue, SimpleWorker

from sla_guard.ingest.pending import drain
from sla_guard.runtime import activated
from sla_guard.security import sign
from sla_guard.timers.arming import timer_queue_name
from sla_guard.timers.loop import dispatch_due

from .conftest import SECRET


def event(event_id: str, kind: str, at: datetime, lead_id: str = "L-1001", **extra) -> dict:
    lead = {"id": lead_id, **extra.pop("lead", {})}
    return {"event_id": event_id, "type": kind, "occurred_at": at.isoformat(), "lead": lead, **extra}


def post_signed(client, payload, now: datetime, secret: str = SECRET, headers: dict | None = None):
    body = json.dumps(payload).encode()
    return client.post(
        "/webhooks/generic",
        data=body,
        content_type="application/json",
        headers={"X-SLA-Guard-Signature": sign(secret, body, int(now.timestamp())), **(headers or {})},
    )


def run_worker(runtime) -> None:
    """Do what `sla-guard worker` does, in this process, until nothing is left: apply the leads
    the web reported (the pump), hand the clocks due by the runtime's clock to the timer queue
    (the timer loop) and run the real RQ worker over everything queued, timers first."""
    queues = [
        Queue(timer_queue_name(runtime.queue_name), connection=runtime.redis),
        Queue(runtime.queue_name, connection=runtime.redis),
    ]
    with activated(runtime):
        while drain(runtime) + dispatch_due(runtime) or any(queue.count for queue in queues):
            SimpleWorker(queues, connection=runtime.redis).work(burst=True, logging_level="WARNING")
