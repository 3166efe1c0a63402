"""Pipedrive adapter: webhooks v2 (the shared fixtures) and v1, basic auth, every kind."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from sla_guard.exceptions import InvalidEvent, Unauthorized
from sla_guard.ingest.adapters import pipedrive
from sla_guard.ingest.adapters.base import RawRequest
from tests.support.crm_payloads import assert_means, fixtures_of, load, raw_request

SETTINGS = {"SLA_GUARD_PIPEDRIVE_USER": "sla-guard", "SLA_GUARD_PIPEDRIVE_PASSWORD": "change-me"}
AUTH = "Basic " + base64.b64encode(b"sla-guard:change-me").decode()
NOW = datetime(2022, 11, 25, 9, 32, tzinfo=UTC)


def request(body: str | dict, *, authorization: str | None = AUTH) -> RawRequest:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return RawRequest(
        "POST",
        "/webhooks/pipedrive",
        "https://sla.example.com/webhooks/pipedrive",
        headers,
        text.encode(),
        "application/json",
    )


def v2(
    entity: str, action: str, data: dict | None, previous: dict | None = None, *, event_id: str = "evt-1", **meta
) -> dict:
    return {
        "data": data,
        "previous": previous,
        "meta": {
            "action": action,
            "entity": entity,
            "entity_id": str((data or previous or {}).get("id")),
            "id": event_id,
            "timestamp": "2022-11-25T09:02:11.724Z",
            "user_id": "12415231",
            "version": "2.0",
            "attempt": 1,
            **meta,
        },
    }


DEAL = {
    "id": 8,
    "title": "Sample Org deal",
    "owner_id": 12415231,
    "pipeline_id": 1,
    "stage_id": 2,
    "status": "open",
    "value": 100,
    "currency": "EUR",
    "origin": "WebForms",
    "lost_reason": None,
}


def parse(payload: dict, settings: dict = SETTINGS):
    return pipedrive.parse(request(payload), settings)


# --- the shared fixtures ------------------------------------------------------------------

PIPEDRIVE_FIXTURES = fixtures_of("pipedrive")


def test_every_pipedrive_fixture_is_covered():
    assert len(PIPEDRIVE_FIXTURES) >= 2


@pytest.mark.parametrize("name", PIPEDRIVE_FIXTURES)
def test_fixture_is_authentic_and_means_what_it_says(name):
    fixture = load(name)
    raw = raw_request(fixture)
    pipedrive.verify(raw, SETTINGS, NOW)
    result = pipedrive.parse(raw, SETTINGS)
    assert_means(result.events, fixture["means"])


def test_event_id_is_the_notification_id_and_survives_retries():
    body = json.loads(load("pipedrive_v2_deal_lost.json")["request"]["body"])
    first = parse(body).events[0]
    body["meta"]["attempt"] = 3
    assert parse(body).events[0].event_id == first.event_id == "pipedrive-df47d877-b58c-4886-91cd-1aa83e1d7366"


# --- authenticity -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"sla-guard:wrong").decode(),
        "Basic " + base64.b64encode(b"intruder:change-me").decode(),
        "Basic " + base64.b64encode(b"sla-guard").decode(),
        "Basic not-base64!",
        "Bearer change-me",
        None,
    ],
)
def test_bad_basic_auth_is_refused(authorization):
    with pytest.raises(Unauthorized):
        pipedrive.verify(request(v2("deal", "create", DEAL), authorization=authorization), SETTINGS, NOW)


def test_password_may_contain_colons_and_cyrillic():
    settings = {"SLA_GUARD_PIPEDRIVE_USER": "crm", "SLA_GUARD_PIPEDRIVE_PASSWORD": "пароль:с:двоеточием"}
    token = "Basic " + base64.b64encode("crm:пароль:с:двоеточием".encode()).decode()
    pipedrive.verify(request(v2("deal", "create", DEAL), authorization=token), settings, NOW)


def test_unconfigured_pipedrive_refuses_everything():
    assert not pipedrive.enabled({"SLA_GUARD_PIPEDRIVE_USER": "sla-guard"}) and pipedrive.enabled(SETTINGS)
    with pytest.raises(Unauthorized, match="not configured"):
        pipedrive.verify(request(v2("deal", "create", DEAL)), {}, NOW)


# --- deals --------------------------------------------------------------------------------


def test_new_deal_is_a_new_lead():
    (created,) = parse(v2("deal", "create", DEAL)).events
    assert created.type == "lead.created"
    assert (created.lead.id, created.lead.stage, created.lead.owner, created.lead.amount, created.lead.source) == (
        "pipedrive:deal:8",
        "2",
        "12415231",
        100,
        "WebForms",
    )


def test_stage_move_and_owner_change_in_one_save_give_two_events():
    result = parse(
        v2("deal", "change", {**DEAL, "stage_id": 3, "owner_id": 777}, {"stage_id": 2, "owner_id": 12415231})
    )
    assert [(e.type, e.event_id) for e in result.events] == [
        ("lead.stage_changed", "pipedrive-evt-1-stage"),
        ("lead.assigned", "pipedrive-evt-1-assigned"),
    ]
    moved, assigned = result.events
    assert (assigned.lead.owner, assigned.previous_owner, assigned.lead.stage) == ("777", "12415231", None)
    assert (moved.lead.stage, moved.previous_stage) == ("3", "2")


def test_won_deal_is_closed_won_without_a_reason():
    (closed,) = parse(v2("deal", "change", {**DEAL, "status": "won"}, {"status": "open"})).events
    assert (closed.type, closed.outcome, closed.reason) == ("lead.closed", "won", None)


def test_reopened_deal_is_back_in_its_stage():
    (reopened,) = parse(v2("deal", "change", {**DEAL, "status": "open"}, {"status": "lost", "lost_reason": "x"})).events
    assert (reopened.type, reopened.lead.stage) == ("lead.stage_changed", "2")


def test_loss_reason_edited_later_updates_the_lead():
    (updated,) = parse(
        v2("deal", "change", {**DEAL, "status": "lost", "lost_reason": "Бюджет"}, {"lost_reason": "Too expensive"})
    ).events
    assert (updated.type, updated.reason) == ("lead.updated", "Бюджет")


def test_deleted_deal_is_closed_without_an_outcome():
    (closed,) = parse(v2("deal", "delete", None, DEAL)).events
    assert (closed.type, closed.outcome, closed.reason, closed.lead.id) == (
        "lead.closed",
        None,
        "deleted",
        "pipedrive:deal:8",
    )


def test_value_change_updates_and_other_changes_are_ignored():
    (updated,) = parse(v2("deal", "change", {**DEAL, "value": 250}, {"value": 100})).events
    assert (updated.type, updated.lead.amount) == ("lead.updated", 250)
    labels = parse(v2("deal", "change", {**DEAL, "label_ids": [5]}, {"label_ids": []}))
    assert labels.events == [] and labels.ignored == ["deal.change"]


def test_custom_fields_become_lead_fields():
    settings = {**SETTINGS, "SLA_GUARD_PIPEDRIVE_FIELD_PRIORITY": "a1b2c3"}
    deal = {**DEAL, "custom_fields": {"a1b2c3": {"type": "enum", "value": "hot"}}}
    assert parse(v2("deal", "create", deal), settings).events[0].lead.priority == "hot"


# --- activities, leads, notes -------------------------------------------------------------

ACTIVITY = {"id": 301, "type": "call", "deal_id": 10, "lead_id": None, "owner_id": 12415231, "done": True}


def test_activity_marked_done_is_a_touch_once():
    (touched,) = parse(v2("activity", "change", ACTIVITY, {"done": False})).events
    assert (touched.type, touched.lead.id, touched.touch.channel, touched.touch.by) == (
        "lead.touched",
        "pipedrive:deal:10",
        "call",
        "12415231",
    )
    edited_later = parse(v2("activity", "change", {**ACTIVITY, "subject": "x"}, {"subject": "y"}))
    assert edited_later.events == [] and edited_later.ignored == ["activity.change"]


@pytest.mark.parametrize(
    "activity",
    [
        {**ACTIVITY, "done": False},  # only planned
        {**ACTIVITY, "type": "task"},  # not a contact with the client
        {**ACTIVITY, "deal_id": None},  # on a person, not on a lead
    ],
)
def test_activities_that_are_not_touches(activity):
    assert parse(v2("activity", "create", activity)).events == []


def test_touch_on_a_pipedrive_lead_and_configurable_types():
    lead_id = "adf21080-0e10-11eb-879b-05d71fb426ec"
    (touched,) = parse(
        v2("activity", "create", {**ACTIVITY, "type": "email", "deal_id": None, "lead_id": lead_id})
    ).events
    assert (touched.lead.id, touched.touch.channel) == (f"pipedrive:lead:{lead_id}", "email")
    settings = {**SETTINGS, "SLA_GUARD_PIPEDRIVE_TOUCH_TYPES": "call,whatsapp"}
    assert (
        parse(v2("activity", "create", {**ACTIVITY, "type": "whatsapp"}), settings).events[0].touch.channel
        == "whatsapp"
    )
    assert parse(v2("activity", "create", {**ACTIVITY, "type": "email"}), settings).events == []


def test_pipedrive_leads_inbox():
    lead = {
        "id": "adf21080-0e10-11eb-879b-05d71fb426ec",
        "title": "Заявка с сайта",
        "owner_id": 5,
        "value": {"amount": 300, "currency": "EUR"},
        "source_name": "Web forms",
        "is_archived": False,
    }
    (created,) = parse(v2("lead", "create", lead)).events
    assert (created.type, created.lead.name, created.lead.amount, created.lead.source) == (
        "lead.created",
        "Заявка с сайта",
        300,
        "Web forms",
    )
    (assigned,) = parse(v2("lead", "change", {**lead, "owner_id": 6}, {"owner_id": 5})).events
    assert (assigned.type, assigned.lead.owner, assigned.previous_owner) == ("lead.assigned", "6", "5")
    (archived,) = parse(v2("lead", "change", {**lead, "is_archived": True}, {"is_archived": False})).events
    assert (archived.type, archived.reason) == ("lead.closed", "archived")


def test_notes_and_persons_are_acknowledged():
    assert parse(v2("note", "create", {"id": 1, "deal_id": 8, "content": "x"})).ignored == ["note.create"]
    assert parse(v2("person", "change", {"id": 1}, {"name": "a"})).ignored == ["person.change"]


# --- webhooks v1 --------------------------------------------------------------------------


def v1(event: str, current: dict | None, previous: dict | None, **meta) -> dict:
    action, _, obj = event.partition(".")
    return {
        "v": 1,
        "event": event,
        "current": current,
        "previous": previous,
        "retry": 0,
        "meta": {
            "v": 1,
            "action": action,
            "object": obj,
            "id": (current or previous)["id"],
            "company_id": 8087566,
            "user_id": 12415231,
            "host": "acme.pipedrive.com",
            "timestamp": 1669367331,
            "timestamp_micro": 1669367331724000,
            **meta,
        },
    }


V1_DEAL = {
    "id": 8,
    "title": "Sample Org deal",
    "user_id": 12415231,
    "stage_id": 2,
    "status": "open",
    "value": 100,
    "pipeline_id": 1,
    "lost_reason": None,
}


def test_v1_stage_change_compares_whole_objects():
    (moved,) = parse(v1("updated.deal", {**V1_DEAL, "stage_id": 3}, V1_DEAL)).events
    assert (moved.type, moved.lead.stage, moved.previous_stage, moved.lead.owner) == (
        "lead.stage_changed",
        "3",
        "2",
        "12415231",
    )
    assert moved.event_id == "pipedrive-v1-deal-8-1669367331724000"
    assert moved.occurred_at == datetime(2022, 11, 25, 9, 8, 51, 724000, tzinfo=UTC)


def test_v1_lost_deal_and_done_call():
    (closed,) = parse(v1("updated.deal", {**V1_DEAL, "status": "lost", "lost_reason": "Too expensive"}, V1_DEAL)).events
    assert (closed.type, closed.outcome, closed.reason) == ("lead.closed", "lost", "Too expensive")
    call = {"id": 301, "type": "call", "deal_id": 10, "user_id": 12415231, "done": True}
    (touched,) = parse(v1("added.activity", call, None)).events
    assert (touched.lead.id, touched.touch.by) == ("pipedrive:deal:10", "12415231")
    (deleted,) = parse(v1("deleted.deal", None, V1_DEAL)).events
    assert deleted.reason == "deleted"


# --- malformed bodies ---------------------------------------------------------------------


def test_truncated_json_is_malformed():
    body = load("pipedrive_v2_deal_lost.json")["request"]["body"]
    for cut in range(0, len(body) - 1, 97):
        with pytest.raises(InvalidEvent) as error:
            pipedrive.parse(request(body[:cut]), SETTINGS)
        assert error.value.field == "body"


def test_missing_event_id_or_deal_id_names_the_field():
    payload = v2("deal", "create", DEAL)
    del payload["meta"]["id"]
    with pytest.raises(InvalidEvent) as error:
        parse(payload)
    assert error.value.field == "meta.id"
    with pytest.raises(InvalidEvent) as error:
        parse(v2("deal", "create", {**DEAL, "id": None}, entity_id=""))
    assert error.value.field == "data.id"
    with pytest.raises(InvalidEvent):
        parse({"data": DEAL})


def test_a_deal_carries_its_organization_as_the_customer():
    fixture = load("pipedrive_v2_deal_lost.json")
    (closed,) = pipedrive.parse(raw_request(fixture), SETTINGS).events
    assert closed.lead.customer == "pipedrive:org:1"
