"""Shared adapter helpers: headers, form and JSON bodies, times, event order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla_guard.exceptions import InvalidEvent
from sla_guard.ingest.adapters import ADAPTERS
from sla_guard.ingest.adapters.base import (
    RawRequest,
    amount,
    from_iso,
    from_unix,
    header,
    indexed,
    make_event,
    ordered,
    parse_form,
    parse_json,
)


def raw(body: bytes | str, content_type: str = "application/x-www-form-urlencoded", **headers: str) -> RawRequest:
    data = body.encode() if isinstance(body, str) else body
    return RawRequest("POST", "/webhooks/x", "https://sla.example.com/webhooks/x", headers, data, content_type)


def test_every_adapter_has_the_same_interface():
    for name, module in ADAPTERS.items():
        for function in ("verify", "parse", "enabled"):
            assert callable(getattr(module, function)), (name, function)
        assert module.enabled({}) is False


def test_header_lookup_ignores_letter_case():
    request = raw("", **{"X-HubSpot-Signature-v3": "abc"})
    assert header(request, "x-hubspot-signature-V3") == "abc"
    assert header(request, "Authorization") is None


def test_form_keys_become_nested_groups_in_index_order():
    tree = parse_form(raw("leads%5Bstatus%5D%5B10%5D%5Bid%5D=2&leads%5Bstatus%5D%5B2%5D%5Bid%5D=1&tags[]=a&tags[]=b"))
    assert [item["id"] for _, item in indexed(tree["leads"]["status"])] == ["1", "2"]
    assert tree["tags"] == {"0": "a", "1": "b"}


def test_form_decodes_plus_cyrillic_and_raw_utf8():
    assert parse_form(raw("name=%D0%9E%D0%9E%D0%9E+%C2%AB%D0%A0%D0%BE%D0%B3%D0%B0%C2%BB"))["name"] == "ООО «Рога»"
    assert parse_form(raw("name=Иван+Петров".encode()))["name"] == "Иван Петров"
    assert parse_form(raw("name=a%2Bb"))["name"] == "a+b"


def test_form_in_windows_1251():
    body = "name=%C7%E0%FF%E2%EA%E0"  # "Заявка" in windows-1251
    assert parse_form(raw(body, "application/x-www-form-urlencoded; charset=windows-1251"))["name"] == "Заявка"
    with pytest.raises(InvalidEvent, match="utf-8"):
        parse_form(raw(body))


@pytest.mark.parametrize(
    "body, field",
    [
        ("", "body"),
        ("a=1&b=%D0", "body"),  # cut inside a percent escape
        ("a[b]=1&a=2", "a"),  # a value and a group at once
        ("a=1&a[b]=2", "a"),
        ("leads[add][0][id", "leads[add][0][id"),
    ],
)
def test_malformed_forms_name_the_problem(body, field):
    with pytest.raises(InvalidEvent) as error:
        parse_form(raw(body))
    assert error.value.field == field


def test_unknown_charset_is_malformed():
    with pytest.raises(InvalidEvent) as error:
        parse_form(raw("a=1", "application/x-www-form-urlencoded; charset=klingon"))
    assert error.value.field == "content_type"


def test_json_errors_say_where():
    assert parse_json(raw('[{"a": "Привет"}]', "application/json")) == [{"a": "Привет"}]
    with pytest.raises(InvalidEvent, match="character 8"):
        parse_json(raw('[{"a": 1', "application/json"))


def test_times_are_aware_utc():
    assert from_unix("1726572752", "t") == datetime(2024, 9, 17, 11, 32, 32, tzinfo=UTC)
    assert from_unix(1726572758000, "t", millis=True) == datetime(2024, 9, 17, 11, 32, 38, tzinfo=UTC)
    assert from_iso("2025-12-18T12:26:40+03:00", "t") == datetime(2025, 12, 18, 9, 26, 40, tzinfo=UTC)
    assert from_iso("2022-11-25T09:02:11.724Z", "t").tzinfo == UTC
    for bad in ("yesterday", "-5", "99999999999999"):
        with pytest.raises(InvalidEvent):
            from_unix(bad, "t")


def test_amounts():
    assert (amount("150000.00"), amount(1000), amount({"amount": 5}), amount(""), amount("n/a")) == (
        150000,
        1000,
        5,
        None,
        None,
    )


def test_events_of_one_moment_come_in_the_order_a_lead_lives_them():
    moment = datetime(2024, 9, 17, tzinfo=UTC)
    closed = make_event("", event_id="b", type="lead.closed", occurred_at=moment, lead={"id": "1"})
    created = make_event("", event_id="a", type="lead.created", occurred_at=moment, lead={"id": "1"})
    assert ordered([closed, created]) == [created, closed]


def test_invalid_event_fields_are_named():
    with pytest.raises(InvalidEvent) as error:
        make_event(
            "data",
            event_id="x",
            type="lead.touched",
            occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
            lead={"id": "1"},
            touch={"channel": "c" * 51},
        )
    assert error.value.field == "data.touch.channel"


# --- no body can crash an adapter ---------------------------------------------------------

_CONTENT_TYPES = {
    "amocrm": "application/x-www-form-urlencoded",
    "bitrix24": "application/x-www-form-urlencoded",
    "hubspot": "application/json",
    "pipedrive": "application/json",
}
_FORM_KEYS = st.sampled_from(
    [
        "leads[add][0][id]",
        "leads[status][0][status_id]",
        "leads[note][0][note][note_type]",
        "task[update][0][status]",
        "message[add][0][type]",
        "event",
        "data[FIELDS][ID]",
        "ts",
        "leads[add][0][created_at]",
        "leads[note][0][note][date_create]",
        "account[id]",
    ]
)
_FORM = st.lists(st.tuples(_FORM_KEYS, st.text(max_size=12)), max_size=8).map(
    lambda pairs: "&".join(f"{key}={value}" for key, value in pairs).encode()
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "eventId",
                    "objectId",
                    "occurredAt",
                    "subscriptionType",
                    "propertyName",
                    "propertyValue",
                    "meta",
                    "data",
                    "previous",
                    "id",
                    "entity",
                    "action",
                    "timestamp",
                    "status",
                    "stage_id",
                    "current",
                    "event",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
).map(lambda value: json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(ADAPTERS)), body=st.binary(max_size=200) | _FORM | _JSON)
def test_any_body_is_read_or_refused_as_malformed(name, body):
    try:
        result = ADAPTERS[name].parse(raw(body, _CONTENT_TYPES[name]), {})
    except InvalidEvent:
        return
    assert all(event.occurred_at.tzinfo is not None for event in result.events)
