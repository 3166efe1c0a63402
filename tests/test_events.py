import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sla_guard.core.events import LeadEvent, parse_events
from sla_guard.exceptions import InvalidEvent

GOOD = {
    "event_id": "evt-1",
    "type": "lead.created",
    "occurred_at": "2026-11-23T12:00:00+03:00",
    "lead": {"id": 1001, "source": "website", "tags": ["enterprise"], "amount": 150000},
}


def test_one_event_is_normalised():
    [event] = parse_events(GOOD)
    assert event.lead.id == "1001"
    assert event.occurred_at == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert event.lead.tags == ("enterprise",)


def test_array_of_events():
    events = parse_events([GOOD, {**GOOD, "event_id": "evt-2", "type": "lead.touched", "touch": {"channel": "call"}}])
    assert [e.event_id for e in events] == ["evt-1", "evt-2"]
    assert events[1].touch.channel == "call"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({k: v for k, v in GOOD.items() if k != "event_id"}, "event_id"),
        ({**GOOD, "type": "lead.exploded"}, "type"),
        ({**GOOD, "occurred_at": "2026-11-23T12:00:00"}, "occurred_at"),
        ({**GOOD, "occurred_at": "yesterday"}, "occurred_at"),
        ({**GOOD, "lead": {}}, "lead.id"),
        ({**GOOD, "lead": {"id": ""}}, "lead.id"),
        ({**GOOD, "lead": {"id": "1", "amount": "lots"}}, "lead.amount"),
        ({**GOOD, "outcome": "maybe"}, "outcome"),
        ([GOOD, {**GOOD, "event_id": None}], "[1].event_id"),
        ([GOOD, "text"], "[1]"),
        ([], "body"),
        ("just a string", "body"),
    ],
)
def test_invalid_events_name_the_field(payload, field):
    with pytest.raises(InvalidEvent) as info:
        parse_events(payload)
    assert info.value.field == field


def test_an_event_an_older_version_stored_is_read_within_todays_bounds():
    """Older versions stored longer texts and links that are not http(s); replaying such a lead
    must not fail (it would be quarantined): the event reads as the bounds now say."""
    stored = {
        "event_id": "e1",
        "type": "lead.closed",
        "occurred_at": "2026-01-05T10:00:00Z",
        "lead": {
            "id": "L-1",
            "name": "N" * 1500,
            "url": "ftp://crm.example/1",
            "tags": ["vip"] * 120,
            "owner": "an\x00na",
        },
        "outcome": "lost",
        "reason": "r" * 1200,
    }
    event = LeadEvent.from_json(json.dumps(stored))
    assert event.lead.name == "N" * 1000 and event.reason == "r" * 1000
    assert event.lead.url is None and event.lead.tags == ("vip",) * 100
    assert event.lead.owner == "an\ufffdna"
    assert (event.event_id, event.type, event.outcome) == ("e1", "lead.closed", "lost")


@pytest.mark.parametrize(
    "change",
    [
        {"type": "lead.exploded"},
        {"lead": {"name": "no id"}},
        {"occurred_at": "yesterday"},
        {"event_id": "e" * 300},  # an id is never cut: two events would become one
        {"lead": {"id": "L" * 300}},
    ],
)
def test_a_stored_event_wrong_in_another_way_still_fails(change):
    stored = {"event_id": "e1", "type": "lead.created", "occurred_at": "2026-01-05T10:00:00Z", "lead": {"id": "L-1"}}
    with pytest.raises(ValidationError):
        LeadEvent.from_json(json.dumps({**stored, **change, "reason": "r" * 1200}))
