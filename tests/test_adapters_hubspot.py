"""HubSpot adapter: signature v3 (with the fixture's test vector), batches and every kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import hubspot
from sla_guard.ingest.adapters.base import RawRequest
from tests.support.crm_payloads import assert_means, fixtures_of, load, raw_request

SECRET = "our-own-test-secret-0123456789"
PUBLIC = "https://hooks.example.com/webhooks/hubspot"
SETTINGS = {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": SECRET, "SLA_GUARD_HUBSPOT_PUBLIC_URL": PUBLIC}
NOW = datetime(2024, 9, 17, 11, 33, tzinfo=UTC)


def millis(moment: datetime) -> str:
    return str(int(moment.timestamp() * 1000))


def signed(
    body: str | bytes,
    *,
    secret: str = SECRET,
    url: str = PUBLIC,
    sent: datetime = NOW,
    headers: dict | None = None,
    seen_url: str | None = None,
) -> RawRequest:
    """A request signed the way HubSpot signs it."""
    data = body if isinstance(body, bytes) else body.encode()
    stamp = millis(sent)
    all_headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-Version": "v3",
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": hubspot.signature(
            secret, "POST", hubspot.signed_uri(RawRequest("POST", "", url, {}, b"", ""), {}), data, stamp
        ),
    }
    all_headers.update(headers or {})
    return RawRequest("POST", "/webhooks/hubspot", seen_url or url, all_headers, data, "application/json")


def fixture_request(fixture: dict) -> RawRequest:
    return raw_request(fixture, url=fixture["request"].get("public_url", PUBLIC))


def event(**fields) -> dict:
    base = {
        "eventId": 1,
        "subscriptionId": 25,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": 1726572758000,
        "attemptNumber": 0,
        "objectId": 1148387968,
        "changeSource": "CRM_UI",
        "sourceId": "userId:45678",
    }
    return {**base, **fields}


def parse(*events: dict, settings: dict = SETTINGS):
    return hubspot.parse(signed(json.dumps(events)), settings)


# --- the shared fixtures ------------------------------------------------------------------

HUBSPOT_FIXTURES = fixtures_of("hubspot")


def test_every_hubspot_fixture_is_covered():
    assert len(HUBSPOT_FIXTURES) >= 2


@pytest.mark.parametrize("name", HUBSPOT_FIXTURES)
def test_fixture_means_what_it_says(name):
    fixture = load(name)
    body = fixture["request"]["body"]
    if "X-HubSpot-Signature-v3" in fixture["request"]["headers"]:
        raw = fixture_request(fixture)
        stamp = int(fixture["request"]["headers"]["X-HubSpot-Request-Timestamp"])
        settings = {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": fixture["client_secret"]}
        hubspot.verify(raw, settings, datetime.fromtimestamp(stamp / 1000, UTC) + timedelta(seconds=30))
    else:
        raw = signed(body)
        settings = SETTINGS
        hubspot.verify(raw, settings, NOW)
    result = hubspot.parse(raw, settings)
    assert_means(result.events, fixture["means"])


def test_signed_test_vector_is_stale_now_and_refused():
    fixture = load("hubspot_dealstage_closedlost_signed.json")
    settings = {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": fixture["client_secret"]}
    with pytest.raises(Unauthorized, match="stale"):
        hubspot.verify(fixture_request(fixture), settings, datetime(2026, 11, 23, tzinfo=UTC))


def test_batch_of_creations_keeps_each_event_id_even_on_retry():
    result = hubspot.parse(signed(load("hubspot_contact_creation_batch.json")["request"]["body"]), SETTINGS)
    assert [(e.event_id, e.lead.id) for e in result.events] == [
        ("hubspot-1001", "hubspot:contact:1246978"),
        ("hubspot-1002", "hubspot:contact:1246979"),
    ]
    assert result.events[0].occurred_at == datetime(2024, 9, 17, 11, 31, 40, tzinfo=UTC)
    assert result.events[0].lead.url == "https://app.hubspot.com/contacts/62515/record/0-1/1246978"


# --- authenticity -------------------------------------------------------------------------


def test_tampered_body_is_refused():
    raw = signed('[{"eventId":1}]')
    forged = RawRequest(raw.method, raw.path, raw.url, raw.headers, b'[{"eventId":2}]', raw.content_type)
    with pytest.raises(Unauthorized, match="bad HubSpot signature"):
        hubspot.verify(forged, SETTINGS, NOW)


def test_other_secret_is_refused():
    with pytest.raises(Unauthorized, match="signature"):
        hubspot.verify(signed("[]", secret="somebody-elses-secret"), SETTINGS, NOW)


@pytest.mark.parametrize("skew", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)])
def test_requests_outside_five_minutes_are_refused(skew):
    hubspot.verify(signed("[]", sent=NOW - timedelta(minutes=4, seconds=59)), SETTINGS, NOW)
    with pytest.raises(Unauthorized, match="stale"):
        hubspot.verify(signed("[]", sent=NOW - skew), SETTINGS, NOW)


@pytest.mark.parametrize("drop", ["X-HubSpot-Signature-v3", "X-HubSpot-Request-Timestamp"])
def test_missing_signature_headers_are_refused(drop):
    raw = signed("[]")
    headers = {k: v for k, v in raw.headers.items() if k != drop}
    with pytest.raises(Unauthorized, match="missing"):
        hubspot.verify(RawRequest(raw.method, raw.path, raw.url, headers, raw.body, raw.content_type), SETTINGS, NOW)


def test_header_names_are_case_insensitive():
    raw = signed("[]")
    lower = {k.lower(): v for k, v in raw.headers.items()}
    hubspot.verify(RawRequest(raw.method, raw.path, raw.url, lower, raw.body, raw.content_type), SETTINGS, NOW)


def test_public_url_setting_wins_over_the_url_behind_a_proxy():
    raw = signed("[]", seen_url="http://10.0.0.7:8000/webhooks/hubspot")
    hubspot.verify(raw, SETTINGS, NOW)
    with pytest.raises(Unauthorized):
        hubspot.verify(raw, {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": SECRET}, NOW)


def test_uri_escapes_hubspot_decodes_before_signing():
    url = "https://hooks.example.com/webhooks/hubspot?portal=a%3Ab%40c"
    assert (
        hubspot.signed_uri(RawRequest("POST", "", url, {}, b"", ""), {})
        == "https://hooks.example.com/webhooks/hubspot?portal=a:b@c"
    )
    hubspot.verify(signed("[]", url=url), {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": SECRET}, NOW)


def test_enabled_needs_the_client_secret():
    assert hubspot.enabled(SETTINGS) and not hubspot.enabled({"SLA_GUARD_HUBSPOT_PUBLIC_URL": PUBLIC})


# --- every kind ---------------------------------------------------------------------------


def test_events_are_sorted_by_when_they_happened():
    result = parse(
        event(
            eventId=2,
            occurredAt=1726572800000,
            subscriptionType="deal.propertyChange",
            propertyName="dealstage",
            propertyValue="presentationscheduled",
        ),
        event(eventId=1, occurredAt=1726572700000, subscriptionType="deal.creation"),
    )
    assert [(e.event_id, e.type) for e in result.events] == [
        ("hubspot-1", "lead.created"),
        ("hubspot-2", "lead.stage_changed"),
    ]
    assert result.events[1].lead.stage == "presentationscheduled"


def test_same_event_twice_in_one_batch_counts_once():
    creation = event(subscriptionType="deal.creation")
    assert len(parse(creation, {**creation, "attemptNumber": 1}).events) == 1


def test_deal_won_and_owner_change():
    won, assigned = parse(
        event(eventId=1, subscriptionType="deal.propertyChange", propertyName="dealstage", propertyValue="closedwon"),
        event(
            eventId=2,
            occurredAt=1726572759000,
            subscriptionType="deal.propertyChange",
            propertyName="hubspot_owner_id",
            propertyValue="77001",
        ),
    ).events
    assert (won.type, won.outcome, won.lead.stage) == ("lead.closed", "won", "closedwon")
    assert (assigned.type, assigned.lead.owner) == ("lead.assigned", "77001")


def test_loss_reason_in_the_same_batch_goes_on_the_closure():
    result = parse(
        event(eventId=1, subscriptionType="deal.propertyChange", propertyName="dealstage", propertyValue="closedlost"),
        event(
            eventId=2,
            subscriptionType="deal.propertyChange",
            propertyName="closed_lost_reason",
            propertyValue="Слишком дорого",
        ),
    )
    assert [(e.event_id, e.type, e.outcome, e.reason) for e in result.events] == [
        ("hubspot-1", "lead.closed", "lost", "Слишком дорого")
    ]


def test_loss_reason_alone_never_closes_a_deal():
    (updated,) = parse(
        event(subscriptionType="deal.propertyChange", propertyName="closed_lost_reason", propertyValue="No budget")
    ).events
    assert (updated.type, updated.reason, updated.outcome) == ("lead.updated", "No budget", None)


def test_custom_pipeline_stages_can_close():
    settings = {
        **SETTINGS,
        "SLA_GUARD_HUBSPOT_WON_STAGES": "closedwon,98765432",
        "SLA_GUARD_HUBSPOT_LOST_STAGES": "closedlost,98765433",
    }
    (closed,) = parse(
        event(subscriptionType="deal.propertyChange", propertyName="dealstage", propertyValue="98765433"),
        settings=settings,
    ).events
    assert (closed.type, closed.outcome) == ("lead.closed", "lost")


def test_amount_and_name_changes_update_the_lead():
    amount, name = parse(
        event(eventId=1, subscriptionType="deal.propertyChange", propertyName="amount", propertyValue="1500.50"),
        event(
            eventId=2,
            occurredAt=1726572759000,
            subscriptionType="deal.propertyChange",
            propertyName="dealname",
            propertyValue="Поставка+оборудования",
        ),
    ).events
    assert (amount.type, amount.lead.amount) == ("lead.updated", 1500.5)
    assert name.lead.name == "Поставка+оборудования"  # JSON text is taken as is: "+" is not a space here


def test_contact_lead_status_is_its_stage():
    (changed,) = parse(
        event(
            subscriptionType="contact.propertyChange",
            propertyName="hs_lead_status",
            propertyValue="ATTEMPTED_TO_CONTACT",
        )
    ).events
    assert (changed.type, changed.lead.stage) == ("lead.stage_changed", "ATTEMPTED_TO_CONTACT")


def test_generic_object_subscriptions_are_read_like_legacy_ones():
    (created,) = parse(event(subscriptionType="object.creation", objectTypeId="0-3")).events
    assert (created.type, created.lead.id) == ("lead.created", "hubspot:deal:1148387968")
    (closed,) = parse(
        event(
            subscriptionType="object.propertyChange",
            objectTypeId="0-3",
            propertyName="dealstage",
            propertyValue="closedlost",
        )
    ).events
    assert closed.outcome == "lost"


def association(from_type: str, to_type: str, **extra) -> dict:
    return event(
        subscriptionType="object.associationChange",
        fromObjectTypeId=from_type,
        toObjectTypeId=to_type,
        fromObjectId=555,
        toObjectId=1148387968,
        associationRemoved=False,
        **extra,
    )


def test_call_logged_on_a_deal_is_a_touch_by_its_user():
    (touched,) = parse(association("0-48", "0-3")).events
    assert (touched.type, touched.lead.id, touched.touch.channel, touched.touch.by) == (
        "lead.touched",
        "hubspot:deal:1148387968",
        "call",
        "45678",
    )
    (meeting,) = parse(
        event(
            subscriptionType="deal.associationChange",
            associationType="DEAL_TO_MEETING_EVENT",
            fromObjectId=1148387968,
            toObjectId=555,
        )
    ).events
    assert (meeting.lead.id, meeting.touch.channel) == ("hubspot:deal:1148387968", "meeting")


def test_emails_are_touches_only_when_configured():
    assert parse(association("0-49", "0-3")).events == []
    settings = {**SETTINGS, "SLA_GUARD_HUBSPOT_TOUCH_OBJECTS": "call,meeting,email"}
    (touched,) = parse(association("0-49", "0-3"), settings=settings).events
    assert touched.touch.channel == "email"


def test_engagement_creation_alone_and_removed_associations_are_ignored():
    result = parse(
        event(eventId=1, subscriptionType="object.creation", objectTypeId="0-48"),
        {**association("0-48", "0-3"), "eventId": 2, "associationRemoved": True},
        event(eventId=3, subscriptionType="company.creation"),
        event(eventId=4, subscriptionType="deal.propertyChange", propertyName="hs_next_step", propertyValue="x"),
    )
    assert result.events == []
    assert result.ignored == ["call.creation", "call.associationChange", "company.creation", "deal.propertyChange"]


def test_deleted_deal_is_closed_and_restored_deal_reopens():
    deleted, restored = parse(
        event(eventId=1, subscriptionType="deal.deletion"),
        event(eventId=2, occurredAt=1726572800000, subscriptionType="deal.restore"),
    ).events
    assert (deleted.type, deleted.outcome, deleted.reason) == ("lead.closed", None, "deleted")
    assert restored.type == "lead.stage_changed"


# --- malformed bodies ---------------------------------------------------------------------


def test_truncated_json_is_malformed():
    body = load("hubspot_contact_creation_batch.json")["request"]["body"]
    with pytest.raises(InvalidEvent) as error:
        hubspot.parse(signed(body[:-40]), SETTINGS)
    assert error.value.field == "body" and "truncated" in error.value.message


def test_missing_ids_name_the_field():
    with pytest.raises(InvalidEvent) as error:
        parse(event(subscriptionType="deal.creation"), {**event(subscriptionType="deal.creation"), "eventId": None})
    assert error.value.field == "[1].eventId"
    with pytest.raises(InvalidEvent) as error:
        parse({**event(subscriptionType="deal.creation"), "objectId": ""})
    assert error.value.field == "[0].objectId"


@pytest.mark.parametrize("body", ['"hello"', "[]", "[1]"])
def test_bodies_that_are_not_event_arrays(body):
    with pytest.raises(InvalidEvent):
        hubspot.parse(signed(body), SETTINGS)


def test_the_associated_company_becomes_the_customer():
    result = parse(
        event(subscriptionType="contact.propertyChange", propertyName="associatedcompanyid", propertyValue="9001")
    )
    (updated,) = result.events
    assert (updated.type, updated.lead.customer) == ("lead.updated", "hubspot:company:9001")
