"""Promise: one lead whose events cannot be applied never stops the others.

It is set aside (quarantined) with the reason, visible in ``GET /api/quarantine`` and in
``/metrics``, skipped by the reconciler and the pump, and applied again when retried after a fix.
"""

from __future__ import annotations

import json

from sqlalchemy import select, update

from sla_guard.cli import main
from sla_guard.ingest.processing import drain, push
from sla_guard.store.models import ClockRow, EventRow, QuarantinedLeadRow
from sla_guard.timers.reconciler import reconcile
from tests.support.webhooks import poison_payload, store_in_inbox

HOT = {"source": "website", "priority": "hot", "owner": "anna"}


def store_poison(runtime, clock, lead_id: str = "L-POISON") -> None:
    """An event stored before sla-guard bounded dates at the edge (:func:`poison_payload`)."""
    with runtime.db.session() as session:
        store_in_inbox(session, lead_id, clock(), poison_payload("poison-1", {"id": lead_id, **HOT}), "poison-1")


def rows(runtime, model, *where):
    with runtime.db.session() as session:
        return session.execute(select(model).where(*where)).scalars().all()


def clocks_of(runtime, lead_id):
    return rows(runtime, ClockRow, ClockRow.lead_id == lead_id)


def test_the_reconciler_applies_every_good_lead_around_a_poison_one(app, client, runtime, clock, event, post_signed):
    """Promise: one lead's bad event never stops the reconciler (issue 9, fault 1)."""
    post_signed(client, event("g1", "lead.created", clock(), lead_id="L-1", lead=HOT), clock())
    store_poison(runtime, clock)
    post_signed(client, event("g2", "lead.created", clock(), lead_id="L-2", lead=HOT), clock())
    clock.advance(seconds=3)

    report = reconcile(runtime)

    assert report.events_applied == 2
    assert len(clocks_of(runtime, "L-1")) == 1 and len(clocks_of(runtime, "L-2")) == 1
    [row] = rows(runtime, QuarantinedLeadRow)
    assert (row.lead_id, row.error, row.failures) == ("L-POISON", "OverflowError", 1)
    assert row.reason
    # the timers of the good leads are armed in the same pass, and later passes skip the poison
    again = reconcile(runtime)
    assert again.events_applied == 0
    assert rows(runtime, QuarantinedLeadRow)[0].failures == 1


def test_quarantined_leads_are_listed_by_the_api_and_counted_in_metrics(app, client, runtime, clock, auth):
    store_poison(runtime, clock)
    clock.advance(seconds=3)
    reconcile(runtime)

    answer = client.get("/api/quarantine", headers=auth)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["count"] == 1
    [lead] = body["leads"]
    assert lead["lead_id"] == "L-POISON"
    assert lead["error"] == "OverflowError"
    assert lead["failures"] == 1
    assert lead["events_waiting"] == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "sla_guard_quarantined_leads 1.0" in metrics
    # the backlog is what the workers still have to apply: a set-aside lead's event is not in it
    assert "sla_guard_events_unprocessed 0.0" in metrics
    assert client.get("/api/quarantine").status_code == 401


def test_the_pump_applies_the_good_leads_of_a_batch_and_sets_the_poison_aside(
    app, client, runtime, clock, event, post_signed
):
    post_signed(client, event("g1", "lead.created", clock(), lead_id="L-1", lead=HOT), clock())
    store_poison(runtime, clock)
    post_signed(client, event("g2", "lead.created", clock(), lead_id="L-2", lead=HOT), clock())
    push(runtime.redis, runtime.queue_name, ["L-POISON"])

    assert drain(runtime) == 3

    assert len(clocks_of(runtime, "L-1")) == 1 and len(clocks_of(runtime, "L-2")) == 1
    assert [row.lead_id for row in rows(runtime, QuarantinedLeadRow)] == ["L-POISON"]


def fix_the_poison(runtime, clock) -> None:
    """What an operator may do: correct the stored event (or upgrade sla-guard)."""
    payload = json.dumps(
        {"event_id": "poison-1", "type": "lead.created", "occurred_at": clock().isoformat(), "lead": {"id": "L-POISON"}}
    )
    with runtime.db.session() as session:
        session.execute(update(EventRow).where(EventRow.event_id == "poison-1").values(payload=payload))


def test_a_retry_through_the_api_applies_the_lead_after_a_fix(app, client, runtime, clock, auth):
    store_poison(runtime, clock)
    clock.advance(seconds=3)
    reconcile(runtime)
    fix_the_poison(runtime, clock)

    assert client.post("/api/quarantine/L-OTHER/retry", headers=auth).status_code == 404
    answer = client.post("/api/quarantine/L-POISON/retry", headers=auth)
    assert answer.status_code == 202
    assert answer.get_json() == {"retried": ["L-POISON"]}
    drain(runtime)

    assert rows(runtime, QuarantinedLeadRow) == []
    assert len(clocks_of(runtime, "L-POISON")) == 1
    assert client.get("/api/quarantine", headers=auth).get_json() == {"count": 0, "leads": []}


def test_a_retry_that_fails_again_keeps_the_lead_quarantined(app, client, runtime, clock, auth):
    store_poison(runtime, clock)
    clock.advance(seconds=3)
    reconcile(runtime)
    client.post("/api/quarantine/L-POISON/retry", headers=auth)
    drain(runtime)
    [row] = rows(runtime, QuarantinedLeadRow)
    assert row.lead_id == "L-POISON"


def test_the_cli_retries_quarantined_leads(runner, settings, monkeypatch, runtime, clock):
    for key in ("DATABASE_URL", "REDIS_URL", "SLA_GUARD_RULES", "SLA_GUARD_QUEUE"):
        monkeypatch.setenv(key, str(settings[key]))
    store_poison(runtime, clock)
    clock.advance(seconds=3)
    reconcile(runtime)

    listed = runner.invoke(main, ["quarantine", "list"])
    assert listed.exit_code == 0, listed.output
    assert "L-POISON" in listed.output and "OverflowError" in listed.output

    still_bad = runner.invoke(main, ["quarantine", "retry", "--all"])
    assert still_bad.exit_code == 1
    assert "L-POISON: failed again" in still_bad.output

    fix_the_poison(runtime, clock)
    fixed = runner.invoke(main, ["quarantine", "retry", "L-POISON"])
    assert fixed.exit_code == 0, fixed.output
    assert "L-POISON: applied" in fixed.output
    assert rows(runtime, QuarantinedLeadRow) == []
    assert len(clocks_of(runtime, "L-POISON")) == 1
