"""Group commit of the inbox: concurrent webhook requests of one web process share their
transaction, each still answered only once its events are committed. Both databases."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from sla_guard.core.events import parse_events
from sla_guard.ingest.processing import push, take
from sla_guard.ingest.webhooks import GroupCommit, Handover
from sla_guard.store.db import Database
from sla_guard.store.models import EventRow


@pytest.fixture
def database(db_url):
    db = Database(db_url)
    yield db
    db.dispose()


def stored(database) -> list[tuple[str, str]]:
    with database.session() as session:
        return sorted(session.execute(select(EventRow.source, EventRow.event_id)).all())


@pytest.fixture
def created(event):
    """``created(*event_ids, lead_id=…)``: lead.created events with these ids."""

    def created(*ids: str, lead_id: str = "L-1"):
        at = datetime(2026, 11, 23, 9, tzinfo=UTC)
        return parse_events([event(event_id, "lead.created", at, lead_id=lead_id) for event_id in ids])

    return created


def test_one_transaction_stores_many_requests_and_answers_each_its_own(database, created):
    now = datetime.now(UTC)
    first = Handover.of("generic", created("a1", "a2"), now)
    second = Handover.of("generic", created("b1", "a1"), now)  # a1 again, from another request
    third = Handover.of("hubspot", created("a1"), now)  # same id from another source: its own event
    GroupCommit(database).commit([first, second, third])
    assert all(handover.done.is_set() and handover.error is None for handover in (first, second, third))
    assert (first.accepted, first.duplicates) == (["a1", "a2"], [])
    assert (second.accepted, second.duplicates) == (["b1"], ["a1"])
    assert (third.accepted, third.duplicates) == (["a1"], [])
    assert stored(database) == [("generic", "a1"), ("generic", "a2"), ("generic", "b1"), ("hubspot", "a1")]


def test_a_request_that_cannot_be_stored_fails_alone(database, created):
    now = datetime.now(UTC)
    good = Handover.of("generic", created("g1"), now)
    bad = Handover.of("generic", created("x1"), now)
    bad.rows[0]["occurred_at"] = None  # a row the database refuses (NOT NULL)
    later = Handover.of("generic", created("g2"), now)
    GroupCommit(database).commit([good, bad, later])
    assert (good.accepted, later.accepted) == (["g1"], ["g2"])
    assert good.error is None and later.error is None
    assert bad.error is not None and bad.done.is_set() and bad.accepted == []
    assert stored(database) == [("generic", "g1"), ("generic", "g2")]


def test_concurrent_requests_through_the_writer_are_all_committed_once(database, created):
    committer = GroupCommit(database)
    now = datetime.now(UTC)
    answers: dict[int, tuple[list[str], list[str]]] = {}

    def request(number: int) -> None:
        # every request repeats the event "shared": exactly one of them stores it
        answers[number] = committer.store("generic", created(f"e{number}", "shared", lead_id=f"L-{number}"), now)

    threads = [threading.Thread(target=request, args=(number,)) for number in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 24
    accepted = [event_id for got, _dup in answers.values() for event_id in got]
    duplicates = [event_id for _got, dup in answers.values() for event_id in dup]
    assert sorted(accepted) == sorted([f"e{n}" for n in range(24)] + ["shared"])
    assert duplicates == ["shared"] * 23
    assert len(stored(database)) == 25


def test_the_webhook_answers_202_only_for_committed_events(app, client, clock, event, post_signed):
    body = [event("w1", "lead.created", clock(), lead_id="L-9"), event("w1", "lead.created", clock(), lead_id="L-9")]
    response = post_signed(client, body, clock())
    assert response.status_code == 202
    assert response.get_json() == {"accepted": ["w1"], "duplicates": ["w1"]}
    assert stored(app.extensions["sla_guard.db"]) == [("generic", "w1")]
    again = post_signed(client, body[:1], clock())
    assert again.get_json() == {"accepted": [], "duplicates": ["w1"]}


def test_a_committed_batch_rings_the_doorbell_once_for_its_new_leads(database, created, redis_conn, queue_name):
    """The workers hear of a whole batch in one push: each lead with a newly stored event once,
    none for an event that was a duplicate."""
    GroupCommit(database).commit([Handover.of("generic", created("old", lead_id="L-old"), datetime.now(UTC))])
    rung: list[list[str]] = []

    def ring(lead_ids: list[str]) -> None:
        rung.append(lead_ids)
        push(redis_conn, queue_name, lead_ids)

    now = datetime.now(UTC)
    batch = [
        Handover.of("generic", created("n1", "n2", lead_id="L-1"), now),
        Handover.of("generic", created("n3", lead_id="L-2"), now),
        Handover.of("generic", created("old", lead_id="L-old"), now),  # already stored: no new event
        Handover.of("generic", created("n4", lead_id="L-1"), now),
    ]
    GroupCommit(database, doorbell=ring).commit(batch)
    assert all(handover.done.is_set() for handover in batch)
    assert rung == [["L-1", "L-2"]]
    assert take(redis_conn, queue_name, 0) == ["L-1", "L-2"]


def test_the_doorbell_rings_before_the_requests_are_answered(database, created, redis_conn, queue_name):
    committer = GroupCommit(database, doorbell=lambda lead_ids: push(redis_conn, queue_name, lead_ids))
    accepted, _duplicates = committer.store("generic", created("d1", lead_id="L-7"), datetime.now(UTC))
    assert accepted == ["d1"]
    assert take(redis_conn, queue_name, 0) == ["L-7"]
