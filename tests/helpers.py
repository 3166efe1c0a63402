"""Helpers for tests: signed generic webhook requests and a burst run of the real RQ worker."""

from __future__ import annotations

import json
from datetime import datetime

from rq import Queue, SimpleWorker

from sla_guard.ingest.pending import drain
from sla_guard.runtime import activated
from sla_guard.security import sign

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
    the web reported (the pump) and run the real RQ worker over everything queued."""
    queue = Queue(runtime.queue_name, connection=runtime.redis)
    with activated(runtime):
        while drain(runtime) or queue.count:
            SimpleWorker([queue], connection=runtime.redis).work(burst=True, logging_level="WARNING")
