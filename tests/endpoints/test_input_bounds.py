"""Promise: input outside the bounds gets 400 naming the field and changes nothing.

Dates between 2000-01-01 and a day after now, NUL-free bounded text (ids 200, names 1,000),
JSON nested at most 64 levels, ``lead.url`` http(s) only — on the generic endpoint and every
CRM adapter, on SQLite and PostgreSQL (issue 9, faults 1, 2 and 6).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.crm_payloads import load
from tests.support.crm_requests import PIPEDRIVE_PASSWORD, PIPEDRIVE_USER, hubspot_signed, nothing_stored, post

DEEP = b"[" * 100_000 + b"]" * 100_000


def refused(response, field: str, app) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    assert response.get_json()["field"] == field
    assert nothing_stored(app)


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "1999-12-31T23:59:59Z"],
)
def test_generic_dates_outside_the_bounds_are_refused(app, client, clock, occurred_at, event, post_signed):
    payload = {**event("e1", "lead.created", clock()), "occurred_at": occurred_at}
    refused(post_signed(client, payload, clock()), "occurred_at", app)


def test_generic_dates_more_than_a_day_ahead_are_refused_and_a_day_is_tolerated(app, client, clock, event, post_signed):
    batch = [event("e1", "lead.created", clock()), event("e2", "lead.updated", clock() + timedelta(days=1, seconds=1))]
    refused(post_signed(client, batch, clock()), "[1].occurred_at", app)
    batch[1] = event("e2", "lead.updated", clock() + timedelta(hours=23))
    assert post_signed(client, batch, clock()).status_code == 202


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lead": {"id": "L-1", "name": "ACME\x00"}}, "lead.name"),
        ({"lead": {"id": "L\x001"}}, "lead.id"),
        ({"event_id": "e\x001"}, "event_id"),
        ({"lead": {"id": "L-1", "owner": "\ud800"}}, "lead.owner"),
        ({"lead": {"id": "L-1", "name": "n" * 1001}}, "lead.name"),
        ({"lead": {"id": "L" * 201}}, "lead.id"),
        ({"lead": {"id": "L-1", "url": "javascript:alert(1)"}}, "lead.url"),
        ({"lead": {"id": "L-1", "url": "ftp://crm.example/1"}}, "lead.url"),
        ({"reason": "r" * 1001}, "reason"),
    ],
)
def test_generic_text_outside_the_bounds_is_refused_on_both_databases(
    app, client, clock, change, field, event, post_signed
):
    refused(post_signed(client, {**event("e1", "lead.created", clock()), **change}, clock()), field, app)


def test_text_at_the_bounds_is_accepted(app, client, clock, event, post_signed):
    lead = {"id": "L" * 200, "name": "n" * 1000, "url": "https://crm.example/leads/1"}
    response = post_signed(client, {**event("e" * 200, "lead.created", clock()), "lead": lead}, clock())
    assert response.status_code == 202


def test_generic_nan_amount_is_refused(app, client, clock, event, post_signed):
    body = json.dumps(event("e1", "lead.created", clock())).replace('"L-1001"', '"L-1", "amount": NaN').encode()
    response = post_signed(client, body, clock())
    refused(response, "lead.amount", app)


def test_generic_deep_json_is_refused(app, client, clock, post_signed):
    response = post_signed(client, DEEP, clock())
    refused(response, "body", app)


@pytest.mark.parametrize("header", ["t=²,v1=00", "t=1" + "0" * 400 + ",v1=00", "t=1,v1=é", "t=\u0661,v1=00"])
def test_odd_signature_headers_are_refused_with_401(app, client, clock, header, event):
    body = json.dumps(event("e1", "lead.created", clock())).encode()
    response = client.post(
        "/webhooks/generic", data=body, content_type="application/json", headers={"X-SLA-Guard-Signature": header}
    )
    assert response.status_code == 401
    assert nothing_stored(app)


# --- CRM adapters -------------------------------------------------------------------------


def test_hubspot_deep_json_is_refused(app, client, clock):
    response = client.post("/webhooks/hubspot", data=DEEP, headers=hubspot_signed(DEEP, clock()))
    refused(response, "body", app)


def pipedrive_auth() -> dict:
    from base64 import b64encode

    return {"Authorization": "Basic " + b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()}


def test_pipedrive_deep_json_is_refused(app, client):
    response = client.post("/webhooks/pipedrive", data=DEEP, content_type="application/json", headers=pipedrive_auth())
    refused(response, "body", app)


PIPEDRIVE_SENT, AMOCRM_CREATED = "2022-11-25T09:02:11.724Z", "1726572752"


@pytest.mark.parametrize(
    "name, sent, stamp, field",
    [
        ("pipedrive_v2_deal_lost.json", PIPEDRIVE_SENT, "9999-12-31T23:59:59Z", "events[0].occurred_at"),
        ("pipedrive_v2_deal_lost.json", PIPEDRIVE_SENT, "0001-01-01T00:00:00+01:00", "meta.timestamp"),
        ("pipedrive_v2_deal_lost.json", PIPEDRIVE_SENT, "1999-06-01T00:00:00Z", "meta.timestamp"),
        ("amocrm_lead_add.json", AMOCRM_CREATED, "9999-12-31+23%3A59%3A59", "events[0].occurred_at"),
        ("amocrm_lead_add.json", AMOCRM_CREATED, "0001-01-01+00%3A00%3A00", "leads[add][0][created_at]"),
        ("amocrm_lead_add.json", AMOCRM_CREATED, "253402300799", "leads[add][0][created_at]"),
        ("amocrm_lead_add.json", AMOCRM_CREATED, "946684799", "leads[add][0][created_at]"),
    ],
)
def test_crm_dates_outside_the_bounds_are_refused(app, client, name, sent, stamp, field):
    fixture = load(name)
    body = fixture["request"]["body"].replace(sent, stamp)
    refused(post(client, fixture, body=body.encode()), field, app)


def test_amocrm_nul_in_a_lead_name_is_refused(app, client):
    fixture = load("amocrm_lead_add.json")
    body = fixture["request"]["body"].replace("Website+request", "Website%00request")
    refused(post(client, fixture, body=body.encode()), "leads[add][0].lead.name", app)


def test_a_moment_a_day_ahead_of_the_server_is_refused_for_crms_too(app, client, clock):
    fixture = load("amocrm_lead_add.json")
    clock.current = datetime.fromtimestamp(1726572752, UTC) - timedelta(days=2)
    refused(post(client, fixture), "events[0].occurred_at", app)
