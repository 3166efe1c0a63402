"""Bitrix24 adapter: notifications → look-ups → REST read-back → events, and the REST call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import requests
from werkzeug import Response

from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import bitrix24
from sla_guard.ingest.adapters.base import Lookup, RawRequest
from tests.support.crm_payloads import assert_means, fixtures_of, load, raw_request

APP_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
SETTINGS = {
    "SLA_GUARD_BITRIX24_APP_TOKEN": APP_TOKEN,
    "SLA_GUARD_BITRIX24_REST_URL": "https://acme.bitrix24.ru/rest/1/s3cr3tk3y/",
}
NOW = datetime(2025, 12, 18, 9, 30, tzinfo=UTC)


def request(body: str) -> RawRequest:
    return RawRequest(
        "POST",
        "/webhooks/bitrix24",
        "https://sla.example.com/webhooks/bitrix24",
        {"Content-Type": "application/x-www-form-urlencoded"},
        body.encode(),
        "application/x-www-form-urlencoded",
    )


def notification(
    event: str, record_id: str = "1000983", *, token: str = APP_TOKEN, domain: str = "acme.bitrix24.ru"
) -> str:
    return urlencode(
        {
            "event": event,
            "event_handler_id": "975",
            "data[FIELDS][ID]": record_id,
            "ts": "1766047124",
            "auth[domain]": domain,
            "auth[application_token]": token,
        }
    )


def rest_reply(fixture: dict) -> dict:
    return next(value for key, value in fixture.items() if key.startswith("rest_reply_"))


# --- the shared fixtures ------------------------------------------------------------------

BITRIX24_FIXTURES = fixtures_of("bitrix24")


def test_every_bitrix24_fixture_is_covered():
    assert len(BITRIX24_FIXTURES) >= 2


@pytest.mark.parametrize("name", BITRIX24_FIXTURES)
def test_fixture_asks_the_right_record_and_means_what_it_says(name):
    fixture = load(name)
    raw = raw_request(fixture)
    bitrix24.verify(raw, SETTINGS, NOW)
    result = bitrix24.parse(raw, SETTINGS)
    assert result.events == [] and result.ignored == []
    (lookup,) = result.lookups
    reply_key = next(key for key in fixture if key.startswith("rest_reply_"))
    assert lookup.method == reply_key.removeprefix("rest_reply_")
    assert lookup.id == rest_reply(fixture)["result"]["ID"]
    assert_means(bitrix24.derive_events(lookup, rest_reply(fixture)["result"], None), fixture["means"])


def test_new_lead_from_the_fixture_in_detail():
    fixture = load("bitrix24_lead_add.json")
    (lookup,) = bitrix24.parse(raw_request(fixture), SETTINGS).lookups
    assert lookup == Lookup("crm.lead.get", "1000983", "ONCRMLEADADD", datetime(2025, 12, 18, 8, 38, 44, tzinfo=UTC))
    (created,) = bitrix24.derive_events(lookup, rest_reply(fixture), None)  # the whole reply is accepted too
    assert created.occurred_at == datetime(2025, 12, 18, 8, 38, 40, tzinfo=UTC)  # DATE_CREATE, +03:00
    assert (created.event_id, created.lead.name) == ("bitrix24-lead-1000983-created", "Request from site")


def test_lost_deal_against_its_last_known_state():
    fixture = load("bitrix24_deal_update.json")
    (lookup,) = bitrix24.parse(raw_request(fixture), SETTINGS).lookups
    result = rest_reply(fixture)["result"]
    before = bitrix24.snapshot(
        {**result, "STAGE_ID": "C2:NEW", "STAGE_SEMANTIC_ID": "P", "CLOSED": "N", "UF_CRM_LOSS_REASON": ""}
    )
    (closed,) = bitrix24.derive_events(lookup, result, before)
    assert (closed.type, closed.outcome, closed.reason) == ("lead.closed", "lost", "Цена")
    assert (closed.previous_stage, closed.lead.stage, closed.lead.pipeline, closed.lead.owner) == (
        "C2:NEW",
        "C2:LOSE",
        "2",
        "17",
    )
    assert closed.occurred_at == datetime(2025, 12, 18, 9, 26, 40, tzinfo=UTC)
    # the second UPDATE notification of the same save: nothing new
    assert bitrix24.derive_events(lookup, result, bitrix24.snapshot(result)) == []


# --- authenticity -------------------------------------------------------------------------


def test_wrong_application_token_is_refused():
    with pytest.raises(Unauthorized, match="application token"):
        bitrix24.verify(request(notification("ONCRMLEADADD", token="x" * 32)), SETTINGS, NOW)


def test_missing_application_token_is_refused():
    with pytest.raises(Unauthorized):
        bitrix24.verify(request(urlencode({"event": "ONCRMLEADADD", "data[FIELDS][ID]": "1"})), SETTINGS, NOW)


def test_another_portal_is_refused():
    with pytest.raises(Unauthorized, match="another Bitrix24 portal"):
        bitrix24.verify(request(notification("ONCRMLEADADD", domain="evil.bitrix24.ru")), SETTINGS, NOW)


def test_enabled_needs_token_and_rest_url():
    assert bitrix24.enabled(SETTINGS)
    assert not bitrix24.enabled({"SLA_GUARD_BITRIX24_APP_TOKEN": APP_TOKEN})


# --- notifications ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, method",
    [("onCrmLeadAdd", "crm.lead.get"), ("oncrmdealupdate", "crm.deal.get"), ("ONCRMACTIVITYADD", "crm.activity.get")],
)
def test_event_names_in_any_case(name, method):
    (lookup,) = bitrix24.parse(request(notification(name, "42")), SETTINGS).lookups
    assert (lookup.method, lookup.id, lookup.event) == (method, "42", name.upper())


def test_other_events_are_acknowledged():
    result = bitrix24.parse(request(notification("ONCRMCONTACTADD")), SETTINGS)
    assert (result.events, result.lookups, result.ignored) == ([], [], ["oncrmcontactadd"])


def test_deleted_deal_is_closed_without_a_lookup():
    result = bitrix24.parse(request(notification("ONCRMDEALDELETE", "5123")), SETTINGS)
    (closed,) = result.events
    assert (closed.type, closed.lead.id, closed.reason, closed.outcome, result.lookups) == (
        "lead.closed",
        "bitrix24:deal:5123",
        "deleted",
        None,
        [],
    )


def test_missing_record_id_and_truncated_bodies():
    with pytest.raises(InvalidEvent) as error:
        bitrix24.parse(request("event=ONCRMLEADADD&ts=1766047124"), SETTINGS)
    assert error.value.field == "data[FIELDS][ID]"
    body = load("bitrix24_lead_add.json")["request"]["body"]
    with pytest.raises(InvalidEvent):
        bitrix24.parse(request(body[: body.index("ID%5D") + 4]), SETTINGS)  # cut inside "%5D"
    for cut in range(1, len(body), 5):
        try:
            bitrix24.parse(request(body[:cut]), SETTINGS)
        except InvalidEvent:
            pass


# --- deriving events from the REST read-back ---------------------------------------------

LEAD = {
    "ID": "1000983",
    "TITLE": "Заявка с сайта",
    "STATUS_ID": "NEW",
    "STATUS_SEMANTIC_ID": "P",
    "SOURCE_ID": "WEB",
    "ASSIGNED_BY_ID": "17",
    "OPPORTUNITY": "150000.00",
    "DATE_CREATE": "2025-12-18T11:38:40+03:00",
    "DATE_MODIFY": "2025-12-18T12:00:00+03:00",
}
UPDATE = Lookup("crm.lead.get", "1000983", "ONCRMLEADUPDATE", NOW)


def test_stage_move_and_reassignment():
    moved, assigned = bitrix24.derive_events(
        UPDATE, {**LEAD, "STATUS_ID": "IN_PROCESS", "ASSIGNED_BY_ID": "23"}, bitrix24.snapshot(LEAD)
    )
    assert (moved.type, moved.lead.stage, moved.previous_stage) == ("lead.stage_changed", "IN_PROCESS", "NEW")
    assert (assigned.type, assigned.lead.owner, assigned.previous_owner) == ("lead.assigned", "23", "17")
    assert moved.event_id != assigned.event_id


def test_lead_statuses_that_close():
    (junk,) = bitrix24.derive_events(
        UPDATE, {**LEAD, "STATUS_ID": "JUNK", "STATUS_SEMANTIC_ID": "F"}, bitrix24.snapshot(LEAD)
    )
    assert (junk.type, junk.outcome, junk.previous_stage) == ("lead.closed", "lost", "NEW")
    (converted,) = bitrix24.derive_events(UPDATE, {**LEAD, "STATUS_ID": "CONVERTED"}, bitrix24.snapshot(LEAD))
    assert converted.outcome == "won"


def test_reopened_deal_changes_stage():
    closed = {**LEAD, "STATUS_ID": "JUNK", "STATUS_SEMANTIC_ID": "F"}
    (reopened,) = bitrix24.derive_events(UPDATE, LEAD, bitrix24.snapshot(closed))
    assert (reopened.type, reopened.lead.stage, reopened.previous_stage) == ("lead.stage_changed", "NEW", "JUNK")


def test_title_or_amount_change_updates_and_same_read_twice_gives_same_ids():
    changed = {**LEAD, "OPPORTUNITY": "200000.00"}
    (updated,) = bitrix24.derive_events(UPDATE, changed, bitrix24.snapshot(LEAD))
    assert (updated.type, updated.lead.amount, updated.lead.name) == ("lead.updated", 200000, "Заявка с сайта")
    assert bitrix24.derive_events(UPDATE, changed, bitrix24.snapshot(LEAD))[0].event_id == updated.event_id


def test_extra_fields_and_reason_field_are_configurable():
    mapping = bitrix24.mapping_from_settings(
        {"SLA_GUARD_BITRIX24_FIELD_PRIORITY": "UF_CRM_PRIORITY", "SLA_GUARD_BITRIX24_REASON_FIELD": "UF_CRM_WHY"}
    )
    record = {**LEAD, "UF_CRM_PRIORITY": "hot", "STATUS_ID": "JUNK", "UF_CRM_WHY": "Дорого"}
    (created, closed) = bitrix24.derive_events(
        Lookup("crm.lead.get", "1000983", "ONCRMLEADADD", NOW), record, None, mapping
    )
    assert (created.lead.priority, closed.reason) == ("hot", "Дорого")


ACTIVITY = {
    "ID": "881",
    "OWNER_TYPE_ID": "2",
    "OWNER_ID": "5123",
    "TYPE_ID": "2",
    "DIRECTION": "2",
    "COMPLETED": "Y",
    "RESPONSIBLE_ID": "17",
    "CREATED": "2025-12-18T12:10:00+03:00",
    "LAST_UPDATED": "2025-12-18T12:14:00+03:00",
}
ACTIVITY_ADD = Lookup("crm.activity.get", "881", "ONCRMACTIVITYADD", NOW)


def test_outgoing_call_is_a_touch_on_its_deal():
    (touched,) = bitrix24.derive_events(ACTIVITY_ADD, ACTIVITY, None)
    assert (touched.type, touched.lead.id, touched.touch.channel, touched.touch.by) == (
        "lead.touched",
        "bitrix24:deal:5123",
        "call",
        "17",
    )
    assert touched.occurred_at == datetime(2025, 12, 18, 9, 14, tzinfo=UTC)
    assert touched.event_id == "bitrix24-activity-881-touched"


@pytest.mark.parametrize(
    "changes",
    [
        {"TYPE_ID": "4", "DIRECTION": "1"},  # the client's e-mail
        {"DIRECTION": "1", "COMPLETED": "N"},  # a missed incoming call, waiting for a callback
        {"OWNER_TYPE_ID": "3"},  # on a contact
        {"TYPE_ID": "1", "COMPLETED": "N"},  # a meeting still planned
        {"TYPE_ID": "6", "PROVIDER_ID": "CRM_TODO", "COMPLETED": "N"},  # a to-do not done yet
        {"TYPE_ID": "6", "PROVIDER_ID": "IMOPENLINES_SESSION", "DIRECTION": "1", "COMPLETED": "N"},  # client writes
        {"TYPE_ID": "6", "PROVIDER_ID": "CRM_WEBFORM", "DIRECTION": "1"},  # a form filled in by the client
    ],
)
def test_activities_that_are_not_touches(changes):
    assert bitrix24.derive_events(ACTIVITY_ADD, {**ACTIVITY, **changes}, None) == []


TODO = {
    **ACTIVITY,
    "ID": "1207",
    "OWNER_TYPE_ID": "1",
    "OWNER_ID": "5",
    "TYPE_ID": "6",
    "PROVIDER_ID": "CRM_TODO",
    "PROVIDER_TYPE_ID": "TODO",
    "DIRECTION": "0",
    "COMPLETED": "Y",
    "DESCRIPTION": "Follow up on the proposal for ACME\n\n[sla-guard-fu-42]",
}


def test_a_completed_modern_to_do_is_a_touch_carrying_its_id():
    """Including the to-dos sla-guard created: the manager ticking one off has touched the lead."""
    (touched,) = bitrix24.derive_events(Lookup("crm.activity.get", "1207", "ONCRMACTIVITYUPDATE", NOW), TODO, None)
    assert (touched.type, touched.lead.id, touched.touch.channel, touched.touch.task_id, touched.touch.by) == (
        "lead.touched",
        "bitrix24:lead:5",
        "task",
        "1207",
        "17",
    )


@pytest.mark.parametrize("changes", [{"COMPLETED": "Y", "DIRECTION": "1"}, {"COMPLETED": "N", "DIRECTION": "2"}])
def test_an_open_line_chat_the_manager_closed_or_started_is_a_touch(changes):
    chat = {**ACTIVITY, "TYPE_ID": "6", "PROVIDER_ID": "IMOPENLINES_SESSION", "PROVIDER_TYPE_ID": "1", **changes}
    (touched,) = bitrix24.derive_events(ACTIVITY_ADD, chat, None)
    assert (touched.lead.id, touched.touch.channel) == ("bitrix24:deal:5123", "message")


def test_completed_meeting_and_task_are_touches():
    assert (
        bitrix24.derive_events(ACTIVITY_ADD, {**ACTIVITY, "TYPE_ID": "1", "DIRECTION": "0"}, None)[0].touch.channel
        == "meeting"
    )
    assert bitrix24.derive_events(ACTIVITY_ADD, {**ACTIVITY, "TYPE_ID": "3"}, None)[0].touch.channel == "task"


# --- the REST call ------------------------------------------------------------------------


def test_fetch_reads_the_record(httpserver):
    httpserver.expect_request(
        "/rest/1/s3cr3tk3y/crm.lead.get.json", method="POST", query_string={"id": "1000983"}
    ).respond_with_json(load("bitrix24_lead_add.json")["rest_reply_crm.lead.get"])
    with requests.Session() as session:
        result = bitrix24.fetch(httpserver.url_for("/rest/1/s3cr3tk3y/"), "crm.lead.get", "1000983", session, 2.0)
    assert (result["ID"], result["STATUS_ID"], result["ASSIGNED_BY_ID"]) == ("1000983", "NEW", "17")
    httpserver.check_assertions()


@pytest.mark.parametrize(
    "status, body, retryable",
    [
        (400, {"error": "NOT_FOUND", "error_description": "Not found"}, False),
        (401, {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}, False),
        (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, True),
        (500, None, True),
        (200, {"error": "ACCESS_DENIED", "error_description": "Access denied"}, False),
        (200, {"result": []}, False),
    ],
)
def test_fetch_errors_are_clear_and_keep_the_key_secret(httpserver, status, body, retryable):
    payload = json.dumps(body) if body is not None else "<html>oops</html>"
    httpserver.expect_request("/rest/1/s3cr3tk3y/crm.deal.get.json").respond_with_response(
        Response(payload, status=status, content_type="application/json")
    )
    with requests.Session() as session, pytest.raises(bitrix24.RestError) as error:
        bitrix24.fetch(httpserver.url_for("/rest/1/s3cr3tk3y"), "crm.deal.get", "5123", session, 2.0)
    assert error.value.retryable is retryable
    assert "crm.deal.get" in str(error.value) and "s3cr3tk3y" not in str(error.value)


def test_fetch_when_the_portal_is_unreachable():
    with requests.Session() as session, pytest.raises(bitrix24.RestError) as error:
        bitrix24.fetch("http://127.0.0.1:9/rest/1/s3cr3tk3y/", "crm.lead.get", "1", session, 0.5)
    assert error.value.retryable and "s3cr3tk3y" not in str(error.value)


def test_the_company_else_the_contact_is_the_customer():
    fixture = load("bitrix24_lead_add.json")
    (lookup,) = bitrix24.parse(raw_request(fixture), SETTINGS).lookups
    record = rest_reply(fixture)["result"]
    with_company = {**record, "COMPANY_ID": "77", "CONTACT_ID": "5"}
    assert bitrix24.derive_events(lookup, with_company, None)[0].lead.customer == "bitrix24:company:77"
    contact_only = {**record, "COMPANY_ID": "0", "CONTACT_ID": "5"}
    assert bitrix24.derive_events(lookup, contact_only, None)[0].lead.customer == "bitrix24:contact:5"
