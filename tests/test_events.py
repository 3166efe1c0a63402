from datetime import UTC, datetime

import pytest

from sla_guard.core.events import parse_events
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
