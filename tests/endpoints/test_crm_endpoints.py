"""The four CRM endpoints on SQLite and PostgreSQL: every fixture as sent, refusals, duplicates.

Every request in ``tests/fixtures`` is posted byte for byte with its headers through the
Flask test client. Bitrix24's portal is a local HTTP server answering ``crm.lead.get`` /
``crm.deal.get`` with the fixtures' replies.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sla_guard import create_app, metrics
from sla_guard.ingest.adapters import hubspot
from sla_guard.store.models import CrmLookupRow, CrmRecordRow, EventRow, LeadRow
from tests.support.crm_payloads import assert_means, fixtures_of, load
from tests.support.crm_requests import (
    B24_APP_TOKEN,
    B24_KEY,
    CRM_PREFIXES,
    HUBSPOT_SECRET,
    HUBSPOT_URL,
    expect_portal,
    hubspot_signed,
    local_portal,
    nothing_stored,
    post,
    rest_calls,
    rows,
    sent_at,
    stored,
)

# --- every fixture, as sent ---------------------------------------------------------------


@pytest.mark.parametrize("name", fixtures_of("amocrm") + fixtures_of("pipedrive"))
def test_amocrm_and_pipedrive_fixtures_are_stored_as_they_mean(app, client, clock, name):
    fixture = load(name)
    response = post(client, fixture)
    assert response.status_code == 202, response.get_json()
    events = stored(app, name.split("_", 1)[0])
    assert response.get_json() == {"accepted": [event.event_id for event in events], "duplicates": []}
    assert_means(events, fixture["means"])
    assert all(row.received_at == clock() for row in rows(app, EventRow))


def test_hubspot_signed_fixture_is_stored_as_it_means(app, client, clock):
    fixture = load("hubspot_dealstage_closedlost_signed.json")
    assert fixture["request"]["public_url"] == HUBSPOT_URL and fixture["client_secret"] == HUBSPOT_SECRET
    clock.current = datetime(2024, 9, 17, 11, 33, tzinfo=UTC)  # the vector's own time
    response = post(client, fixture)
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"accepted": ["hubspot-3816279340"], "duplicates": []}
    assert_means(stored(app, "hubspot"), fixture["means"])


def test_hubspot_batch_fixture_is_stored_in_occurred_order(app, client, clock):
    fixture = load("hubspot_contact_creation_batch.json")
    body = fixture["request"]["body"].encode()
    response = post(client, fixture, headers=hubspot_signed(body, clock()))
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"accepted": ["hubspot-1001", "hubspot-1002"], "duplicates": []}
    assert_means(stored(app, "hubspot"), fixture["means"])


@pytest.mark.parametrize("name", fixtures_of("bitrix24"))
def test_bitrix24_fixtures_are_acknowledged_then_read_back_over_rest(
    app, client, runtime, clock, httpserver, name, run_worker
):
    fixture = load(name)
    clock.current = sent_at(fixture) + timedelta(seconds=1)
    method, reply = next(
        (key.removeprefix("rest_reply_"), value) for key, value in fixture.items() if key.startswith("rest_reply_")
    )
    record_id = reply["result"]["ID"]
    expect_portal(httpserver, method, record_id, reply)
    response = post(client, fixture, body=local_portal(fixture["request"]["body"], httpserver))
    assert response.status_code == 202, response.get_json()
    [lookup] = rows(app, CrmLookupRow)
    assert response.get_json() == {"accepted": [lookup.lookup_key], "duplicates": []}
    assert (lookup.method, lookup.record_id, lookup.done_at) == (method, record_id, None)
    assert stored(app) == []  # nothing is known until the portal is asked
    run_worker(runtime)
    httpserver.check_assertions()
    assert_means(stored(app, "bitrix24"), fixture["means"])
    [lookup] = rows(app, CrmLookupRow)
    assert (lookup.attempts, lookup.last_error) == (1, None) and lookup.done_at is not None
    [record] = rows(app, CrmRecordRow)
    assert (record.kind, record.record_id) == (method.split(".")[1], record_id)
    [lead] = rows(app, LeadRow)
    assert (lead.lead_id, lead.owner) == (f"bitrix24:{record.kind}:{record_id}", "17")


def test_bitrix24_fixture_bytes_from_the_configured_portal_are_accepted(settings, clock):
    fixture = load("bitrix24_lead_add.json")
    app = create_app(
        {
            **settings,
            "TESTING": True,
            "CLOCK": clock,
            "SLA_GUARD_BITRIX24_REST_URL": f"https://acme.bitrix24.ru/rest/1/{B24_KEY}/",
        }
    )
    try:
        response = post(app.test_client(), fixture)
        assert response.status_code == 202, response.get_json()
        assert response.get_json() == {"accepted": ["oncrmleadadd-1000983-1766047124"], "duplicates": []}
        [lookup] = rows(app, CrmLookupRow)
        assert (lookup.crm, lookup.event, lookup.sent_at) == (
            "bitrix24",
            "ONCRMLEADADD",
            datetime.fromtimestamp(1766047124, UTC),
        )
    finally:
        app.extensions["sla_guard.db"].dispose()


# --- refusals -----------------------------------------------------------------------------


def _amo_other_account(fixture):
    return {"body": fixture["request"]["body"].replace("account%5Bid%5D=30307558", "account%5Bid%5D=99999").encode()}


REFUSALS = [
    (
        "amocrm_lead_add.json",
        lambda f, s: {"path": "/webhooks/amocrm/wrong-token"},
        "token",
        "wrong amoCRM webhook token",
    ),
    ("amocrm_lead_add.json", lambda f, s: _amo_other_account(f), "account[id]", "another amoCRM account"),
    (
        "bitrix24_lead_add.json",
        lambda f, s: {"body": local_portal(f["request"]["body"], s).replace(B24_APP_TOKEN.encode(), b"forged-token")},
        "auth[application_token]",
        "wrong Bitrix24 application token",
    ),
    (
        "bitrix24_lead_add.json",
        lambda f, s: {"body": f["request"]["body"].replace("acme.bitrix24.ru", "evil.bitrix24.ru").encode()},
        "auth[application_token]",
        "another Bitrix24 portal",
    ),
    (
        "hubspot_dealstage_closedlost_signed.json",
        lambda f, s: {"body": f["request"]["body"].replace("closedlost", "closedwon").encode()},
        "X-HubSpot-Signature-v3",
        "bad HubSpot signature",
    ),
    (
        "hubspot_dealstage_closedlost_signed.json",
        lambda f, s: {"headers": {"X-HubSpot-Request-Timestamp": str(1726572760123 - 600_000)}},
        "X-HubSpot-Signature-v3",
        "stale HubSpot request",
    ),
    (
        "pipedrive_v2_deal_lost.json",
        lambda f, s: {"headers": {"Authorization": "Basic c2xhLWd1YXJkOndyb25n"}},
        "Authorization",
        "wrong Pipedrive basic auth",
    ),
    (
        "pipedrive_v2_activity_create.json",
        lambda f, s: {"headers": {"Authorization": ""}},
        "Authorization",
        "missing basic auth",
    ),
]


@pytest.mark.parametrize("name, change, field, reason", REFUSALS)
def test_bad_credentials_are_refused_and_store_nothing(app, client, clock, httpserver, name, change, field, reason):
    clock.current = datetime(2024, 9, 17, 11, 33, tzinfo=UTC)
    response = post(client, load(name), **change(load(name), httpserver))
    assert response.status_code == 401
    body = response.get_json()
    assert reason in body["error"] and body["field"] == field
    assert nothing_stored(app)


@pytest.mark.parametrize(
    "path", ["/webhooks/amocrm/anything", "/webhooks/bitrix24", "/webhooks/hubspot", "/webhooks/pipedrive"]
)
def test_a_crm_without_settings_is_not_enabled(settings, clock, path):
    bare = {key: value for key, value in settings.items() if not key.startswith(CRM_PREFIXES)}
    app = create_app({**bare, "TESTING": True, "CLOCK": clock})
    try:
        response = app.test_client().post(path, data=b"x=1", content_type="application/x-www-form-urlencoded")
        assert response.status_code == 404
        assert "not enabled" in response.get_json()["error"] and "SLA_GUARD_" in response.get_json()["error"]
    finally:
        app.extensions["sla_guard.db"].dispose()


def _cut_in_an_escape(body: str) -> bytes:
    """The body cut short in the middle of a percent escape, as a dropped connection leaves it."""
    return body[: body.index("%5B", len(body) // 2) + 2].encode()


@pytest.mark.parametrize(
    "name",
    [
        "amocrm_lead_add.json",
        "bitrix24_lead_add.json",
        "pipedrive_v2_deal_lost.json",
        "hubspot_contact_creation_batch.json",
    ],
)
def test_a_truncated_body_is_refused_with_400(app, client, clock, httpserver, name):
    fixture = load(name)
    body = fixture["request"]["body"]
    if name.startswith(("amocrm", "bitrix24")):
        cut = _cut_in_an_escape(body)
        headers = None
    else:
        cut = body[: len(body) // 2].encode()
        headers = hubspot_signed(cut, clock()) if name.startswith("hubspot") else None
    response = post(client, fixture, body=cut, headers=headers)
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["field"]
    assert nothing_stored(app)


def test_a_body_over_the_limit_gets_413(settings, clock):
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "SLA_GUARD_MAX_BODY_BYTES": 200})
    try:
        response = post(app.test_client(), load("amocrm_lead_add.json"))
        assert response.status_code == 413
        assert nothing_stored(app)
    finally:
        app.extensions["sla_guard.db"].dispose()


# --- duplicates and ignored kinds ---------------------------------------------------------


@pytest.mark.parametrize("name", ["amocrm_lead_status_lost.json", "pipedrive_v2_deal_lost.json"])
def test_a_repeated_delivery_is_a_duplicate(app, client, name):
    fixture = load(name)
    first = post(client, fixture).get_json()
    again = post(client, fixture)
    assert again.status_code == 202
    assert again.get_json() == {"accepted": [], "duplicates": first["accepted"]}
    assert len(rows(app, EventRow)) == len(first["accepted"])


def test_a_hubspot_retry_in_a_later_batch_is_a_duplicate(app, client, clock):
    fixture = load("hubspot_contact_creation_batch.json")
    body = fixture["request"]["body"].encode()
    post(client, fixture, headers=hubspot_signed(body, clock()))
    clock.advance(minutes=1)
    retry = json.dumps([{**json.loads(body)[1], "attemptNumber": 2}]).encode()
    response = post(client, fixture, body=retry, headers=hubspot_signed(retry, clock()))
    assert response.get_json() == {"accepted": [], "duplicates": ["hubspot-1002"]}
    assert len(rows(app, EventRow)) == 2


def test_a_repeated_bitrix24_notification_is_read_once(app, client, runtime, clock, httpserver, run_worker):
    fixture = load("bitrix24_lead_add.json")
    clock.current = sent_at(fixture)
    expect_portal(httpserver, "crm.lead.get", "1000983", fixture["rest_reply_crm.lead.get"])
    body = local_portal(fixture["request"]["body"], httpserver)
    key = post(client, fixture, body=body).get_json()["accepted"]
    assert post(client, fixture, body=body).get_json() == {"accepted": [], "duplicates": key}
    run_worker(runtime)
    assert len(rest_calls(httpserver)) == 1 and len(rows(app, CrmLookupRow)) == 1


IGNORED = [
    (
        "amocrm_lead_add.json",
        "contacts%5Badd%5D%5B0%5D%5Bid%5D=5&contacts%5Badd%5D%5B0%5D%5Bname%5D=Ivan&account%5Bid%5D=30307558",
        "contacts.add",
    ),
    ("bitrix24_lead_add.json", None, "oncrmcontactadd"),
    (
        "pipedrive_v2_deal_lost.json",
        json.dumps(
            {
                "meta": {
                    "action": "create",
                    "entity": "person",
                    "id": "p-1",
                    "timestamp": "2022-11-25T09:02:11Z",
                    "version": "2.0",
                },
                "data": {"id": 8, "name": "Ivan"},
                "previous": None,
            }
        ),
        "person.create",
    ),
    (
        "hubspot_contact_creation_batch.json",
        json.dumps(
            [{"eventId": 77, "subscriptionType": "company.creation", "objectId": 5, "occurredAt": 1726572700000}]
        ),
        "company.creation",
    ),
]


@pytest.mark.parametrize("name, body, kind", IGNORED)
def test_unknown_kinds_are_acknowledged_and_counted(app, client, clock, httpserver, name, body, kind):
    fixture = load(name)
    crm = fixture["crm"]
    if crm == "bitrix24":
        body = local_portal(fixture["request"]["body"], httpserver).decode().replace("ONCRMLEADADD", "ONCRMCONTACTADD")
    counter = metrics.EVENTS_IGNORED.labels(crm, kind)
    before = counter._value.get()
    data = body.encode()
    response = post(client, fixture, body=data, headers=hubspot_signed(data, clock()) if crm == "hubspot" else None)
    assert response.status_code == 202, response.get_json()
    assert response.get_json() == {"accepted": [], "duplicates": [], "ignored": [kind]}
    assert counter._value.get() == before + 1
    assert nothing_stored(app)


def test_cyrillic_and_plus_for_space_reach_the_lead(app, client, runtime, clock, run_worker):
    fixture = load("amocrm_lead_add.json")
    clock.current = datetime(2024, 9, 17, 11, 33, tzinfo=UTC)
    cyrillic = "%D0%97%D0%B0%D1%8F%D0%B2%D0%BA%D0%B0+%D1%81+%D1%81%D0%B0%D0%B9%D1%82%D0%B0"  # "Заявка с сайта"
    body = fixture["request"]["body"].replace("Website+request", cyrillic)
    assert post(client, fixture, body=body.encode()).status_code == 202
    run_worker(runtime)
    [lead] = rows(app, LeadRow)
    assert lead.name == "Заявка с сайта"


def test_hubspot_without_a_public_url_is_checked_against_the_url_it_reached(settings, clock):
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "SLA_GUARD_HUBSPOT_PUBLIC_URL": ""})
    try:
        fixture = load("hubspot_contact_creation_batch.json")
        body = fixture["request"]["body"].encode()
        stamp = str(int(clock().timestamp() * 1000))
        seen = hubspot.signature(HUBSPOT_SECRET, "POST", "http://localhost/webhooks/hubspot", body, stamp)
        headers = {"X-HubSpot-Request-Timestamp": stamp, "X-HubSpot-Signature-v3": seen}
        assert post(app.test_client(), fixture, headers=headers).status_code == 202
        public = hubspot_signed(body, clock())  # signed for the public URL, which is not set here
        assert post(app.test_client(), fixture, headers=public).status_code == 401
    finally:
        app.extensions["sla_guard.db"].dispose()
