"""Applying events in batches: one transaction for many leads gives each lead exactly what
applying it alone gives, events replayed in the order they happened, rows updated in place.
Both databases."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from sla_guard.ingest.processing import apply_leads, process_lead, process_leads
from sla_guard.store.models import ClockRow, EventRow, LeadRow, QuarantinedLeadRow, StageStayRow
from tests.support.webhooks import store_in_inbox

HOT = {"source": "website", "priority": "hot", "owner": "anna", "team": "inbound", "stage": "new"}


def post_story(client, post_signed, event, start, suffix: str) -> list[str]:
    """Three leads, each sent out of order (a later event posted first); returns their ids."""
    a, b, c = f"A{suffix}", f"B{suffix}", f"C{suffix}"
    story = [
        event(f"{a}-2", "lead.touched", start + timedelta(minutes=3), lead_id=a, touch={"channel": "call"}),
        event(f"{a}-1", "lead.created", start, lead_id=a, lead=HOT),
        event(
            f"{b}-2",
            "lead.stage_changed",
            start + timedelta(minutes=5),
            lead_id=b,
            lead={**HOT, "stage": "qualified"},
            previous_stage="new",
        ),
        event(f"{b}-1", "lead.created", start, lead_id=b, lead=HOT),
        event(f"{c}-1", "lead.created", start + timedelta(minutes=1), lead_id=c, lead={**HOT, "priority": "normal"}),
    ]
    for item in story:
        assert post_signed(client, item, start + timedelta(minutes=6)).status_code == 202
    return [a, b, c]


def outcome(runtime, lead_ids: list[str]) -> list[tuple]:
    """Everything applying wrote about these leads, without row ids and lead ids."""
    with runtime.db.session() as session:
        leads = session.execute(select(LeadRow).where(LeadRow.lead_id.in_(lead_ids)).order_by(LeadRow.lead_id))
        clocks = session.execute(
            select(ClockRow).where(ClockRow.lead_id.in_(lead_ids)).order_by(ClockRow.lead_id, ClockRow.name)
        )
        stays = session.execute(
            select(StageStayRow).where(StageStayRow.lead_id.in_(lead_ids)).order_by(StageStayRow.lead_id)
        )
        return [
            *[
                (lead.status, lead.stage, lead.priority, lead.created_at, lead.first_touch_at, lead.rule_name)
                for lead in leads.scalars()
            ],
            *[
                (c.name, c.cycle, c.rule_name, c.started_at, c.due_at, c.stopped_at, c.stop_reason, c.next_fire_at)
                for c in clocks.scalars()
            ],
            *[(s.seq, s.stage, s.entered_at, s.left_at, s.left_how, s.next_stage) for s in stays.scalars()],
        ]


def test_a_batch_gives_each_lead_what_applying_it_alone_gives(app, client, runtime, clock, event, post_signed):
    start = clock() - timedelta(minutes=6)
    batched = post_story(client, post_signed, event, start, "-batch")
    alone = post_story(client, post_signed, event, start, "-alone")
    process_leads(runtime, list(reversed(batched)))
    for lead_id in alone:
        process_lead(runtime, lead_id)
    assert outcome(runtime, batched) == outcome(runtime, alone)

    a, b, c = batched
    with runtime.db.session() as session:
        lead_a = session.get(LeadRow, a)
        assert lead_a.first_touch_at == start + timedelta(minutes=3)  # the touch posted first still came second
        stays_b = session.execute(
            select(StageStayRow.stage, StageStayRow.left_how)
            .where(StageStayRow.lead_id == b)
            .order_by(StageStayRow.seq)
        ).all()
        assert [tuple(row) for row in stays_b] == [("new", "moved"), ("qualified", None)]
        [running] = session.execute(select(ClockRow).where(ClockRow.lead_id == c)).scalars()
        assert (running.stopped_at, running.due_at) == (None, start + timedelta(minutes=1, hours=2))
        unapplied = session.execute(select(EventRow.event_id).where(EventRow.processed_at.is_(None))).scalars()
        assert list(unapplied) == []


def test_applying_a_batch_again_with_new_events_updates_rows_in_place(app, client, runtime, clock, event, post_signed):
    start = clock() - timedelta(minutes=6)
    a, b, c = post_story(client, post_signed, event, start, "")
    process_leads(runtime, [a, b, c])
    with runtime.db.session() as session:
        before = {row.lead_id: row.id for row in session.execute(select(ClockRow)).scalars()}
        assert session.get(ClockRow, before[c]).next_fire_at == start + timedelta(minutes=1, hours=2)
    closed = event("B-3", "lead.closed", start + timedelta(minutes=6), lead_id=b, outcome="lost", reason="price")
    assert post_signed(client, closed, clock()).status_code == 202
    touched = event("C-2", "lead.touched", start + timedelta(minutes=4), lead_id=c, touch={"channel": "email"})
    assert post_signed(client, touched, clock()).status_code == 202
    process_leads(runtime, [a, b, c])
    with runtime.db.session() as session:
        clocks = {row.lead_id: row for row in session.execute(select(ClockRow)).scalars()}
        assert {lead_id: row.id for lead_id, row in clocks.items()} == before  # no clock made twice
        assert (clocks[c].stopped_at, clocks[c].next_fire_at) == (start + timedelta(minutes=4), None)
        stays_b = session.execute(
            select(StageStayRow.seq, StageStayRow.stage, StageStayRow.left_how)
            .where(StageStayRow.lead_id == b)
            .order_by(StageStayRow.seq)
        ).all()
        assert [tuple(row) for row in stays_b] == [(0, "new", "moved"), (1, "qualified", "lost")]
        assert session.get(LeadRow, b).status == "lost"


def test_a_poison_lead_in_a_batch_is_quarantined_and_the_others_applied(
    app, client, runtime, clock, event, post_signed, store_unreadable_event
):
    start = clock() - timedelta(minutes=6)
    a, b, c = post_story(client, post_signed, event, start, "")
    store_unreadable_event(runtime, "L-bad", start)
    assert apply_leads(runtime, [a, "L-bad", b, c]) == [a, b, c]  # the poison lead is set aside
    with runtime.db.session() as session:
        quarantined = session.execute(select(QuarantinedLeadRow.lead_id)).scalars()
        assert list(quarantined) == ["L-bad"]
        unapplied = session.execute(select(EventRow.event_id).where(EventRow.processed_at.is_(None))).scalars()
        assert list(unapplied) == ["broken"]
        known = session.execute(select(LeadRow.lead_id).where(LeadRow.known.is_(True)).order_by(LeadRow.lead_id))
        assert list(known.scalars()) == [a, b, c]


def test_an_event_an_older_version_stored_beyond_todays_bounds_is_applied_not_quarantined(app, runtime, clock):
    """Older versions stored names over 1,000 characters and links that are not http(s); the
    lead's history replays within today's bounds instead of setting the lead aside."""
    at = clock() - timedelta(minutes=1)
    lead = {"id": "L-old", "name": "N" * 1500, "url": "ftp://crm.example/7", "owner": "anna", "source": "web"}
    stored = {"event_id": "old-1", "type": "lead.created", "occurred_at": at.isoformat(), "lead": lead}
    with runtime.db.session() as session:
        store_in_inbox(session, "L-old", at, json.dumps(stored), "old-1")
    assert apply_leads(runtime, ["L-old"]) == ["L-old"]
    with runtime.db.session() as session:
        row = session.get(LeadRow, "L-old")
        assert (row.known, row.name, row.url, row.owner) == (True, "N" * 1000, None, "anna")
        assert session.execute(select(QuarantinedLeadRow)).all() == []
        assert session.execute(select(EventRow.processed_at)).scalar() is not None
        assert [clock_row.name for clock_row in session.execute(select(ClockRow)).scalars()] == ["first_touch"]
