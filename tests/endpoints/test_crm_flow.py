"""CRM work after the 202, with the real worker and both databases: Bitrix24's REST read-back
(retries, the reconciler, unchanged records, secrets), amoCRM's loss reason, and one run per
CRM from the raw creation request to the alert at the managers' webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest
from redis import Redis
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import update

from sla_guard import create_app
from sla_guard.ingest import crm_sync
from sla_guard.store.models import ClockRow, CrmLookupRow, CrmRecordRow, EventRow, LeadRow
from sla_guard.timers.reconciler import reconcile
from tests.support.crm_payloads import load
from tests.support.crm_requests import (
    AMO_ACCESS_TOKEN,
    B24_KEY,
    expect_portal,
    hubspot_signed,
    local_portal,
    post,
    rows,
    sent_at,
    stored,
)
from tests.support.firing import run_timer
from tests.support.webhooks import received

LEAD_ADD = "bitrix24_lead_add.json"
DEAL_UPDATE = "bitrix24_deal_update.json"


def notify(client, server, name: str, *, ts_offset: int = 0):
    """Post a Bitrix24 fixture from the local portal, optionally as a later notification."""
    fixture = load(name)
    body = fixture["request"]["body"]
    if ts_offset:
        ts = int(sent_at(fixture).timestamp())
        body = body.replace(f"ts={ts}", f"ts={ts + ts_offset}")
    response = post(client, fixture, body=local_portal(body, server))
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def the_lookup(app) -> CrmLookupRow:
    [lookup] = rows(app, CrmLookupRow)
    return lookup


def scheduled(runtime) -> dict[str, float]:
    registry = ScheduledJobRegistry(runtime.queue_name, connection=runtime.redis)
    return {job_id: registry.get_scheduled_time(job_id).timestamp() for job_id in registry.get_job_ids()}


# --- Bitrix24 read-back -------------------------------------------------------------------


def test_a_failed_read_is_retried_after_its_wait(app, client, runtime, clock, httpserver, run_worker):
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture)
    expect_portal(
        httpserver,
        "crm.lead.get",
        "1000983",
        {"error": "INTERNAL_SERVER_ERROR", "error_description": "try later"},
        status=503,
    )
    expect_portal(httpserver, "crm.lead.get", "1000983", fixture["rest_reply_crm.lead.get"])
    notify(client, httpserver, LEAD_ADD)
    run_worker(runtime)
    lookup = the_lookup(app)
    assert (lookup.attempts, lookup.done_at, stored(app)) == (1, None, [])
    assert "HTTP 503" in lookup.last_error
    retry_id = crm_sync.lookup_job_id(runtime.queue_name, lookup.id, 2)
    assert scheduled(runtime) == {retry_id: (clock() + timedelta(seconds=5)).timestamp()}

    clock.advance(seconds=4)
    assert reconcile(runtime).lookups_retried == 0  # its wait is not over
    clock.advance(seconds=7)  # the retry is overdue and the scheduler did not run it: the reconciler does
    assert reconcile(runtime).lookups_retried == 1
    run_worker(runtime)
    httpserver.check_assertions()
    lookup = the_lookup(app)
    assert (lookup.attempts, lookup.last_error) == (2, None) and lookup.done_at is not None
    assert [event.type for event in stored(app)] == ["lead.created"]
    assert reconcile(runtime).lookups_retried == 0


def test_a_lookup_accepted_while_redis_was_down_is_queued_by_the_reconciler(
    app, settings, runtime, clock, httpserver, run_worker
):
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture)
    expect_portal(httpserver, "crm.lead.get", "1000983", fixture["rest_reply_crm.lead.get"])
    down = create_app({**settings, "TESTING": True, "CLOCK": clock, "REDIS_URL": "redis://127.0.0.1:9/0"})
    try:
        notify(down.test_client(), httpserver, LEAD_ADD)
    finally:
        down.extensions["sla_guard.db"].dispose()
    assert reconcile(runtime).lookups_retried == 0  # young: its own job may still come
    clock.advance(seconds=6)
    assert reconcile(runtime).lookups_retried == 1
    run_worker(runtime)
    [lead] = rows(app, LeadRow)
    assert (lead.lead_id, lead.owner, lead.source, lead.known) == ("bitrix24:lead:1000983", "17", "WEB", True)


def test_an_unchanged_record_gives_no_new_event_and_a_change_gives_one(
    app, client, runtime, clock, httpserver, run_worker
):
    fixture = load(DEAL_UPDATE)
    clock.current = sent_at(fixture)
    reply = fixture["rest_reply_crm.deal.get"]
    expect_portal(httpserver, "crm.deal.get", "5123", reply)
    expect_portal(httpserver, "crm.deal.get", "5123", reply)
    reassigned = {"result": {**reply["result"], "ASSIGNED_BY_ID": "23", "DATE_MODIFY": "2025-12-18T12:30:00+03:00"}}
    expect_portal(httpserver, "crm.deal.get", "5123", reassigned)
    notify(client, httpserver, DEAL_UPDATE)
    run_worker(runtime)
    [closed] = stored(app)
    assert (closed.type, closed.outcome, closed.reason) == ("lead.closed", "lost", "Цена")

    notify(client, httpserver, DEAL_UPDATE, ts_offset=1)  # a second UPDATE for the same save
    run_worker(runtime)
    assert [event.event_id for event in stored(app)] == [closed.event_id]

    notify(client, httpserver, DEAL_UPDATE, ts_offset=200)
    run_worker(runtime)
    httpserver.check_assertions()
    events = stored(app)
    assert [(event.type, event.previous_owner, event.lead.owner) for event in events[1:]] == [
        ("lead.assigned", "17", "23")
    ]
    assert all(lookup.done_at is not None for lookup in rows(app, CrmLookupRow))
    [record] = rows(app, CrmRecordRow)
    assert json.loads(record.data)["owner"] == "23"
    [lead] = rows(app, LeadRow)
    assert (lead.status, lead.owner, lead.reason) == ("lost", "23", "Цена")


def test_a_creation_read_after_an_update_of_the_record_still_creates_the_lead(
    app, client, runtime, clock, httpserver, run_worker
):
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture) + timedelta(seconds=30)
    reply = fixture["rest_reply_crm.lead.get"]
    expect_portal(httpserver, "crm.lead.get", "1000983", reply)
    expect_portal(httpserver, "crm.lead.get", "1000983", reply)
    update_body = (
        fixture["request"]["body"].replace("ONCRMLEADADD", "onCrmLeadUpdate").replace("ts=1766047124", "ts=1766047130")
    )
    assert post(client, fixture, body=local_portal(update_body, httpserver)).status_code == 202
    run_worker(runtime)  # the ADD's own read failed and comes later
    notify(client, httpserver, LEAD_ADD)
    run_worker(runtime)
    httpserver.check_assertions()
    assert sorted(event.type for event in stored(app)) == ["lead.created", "lead.updated"]
    [clock_row] = rows(app, ClockRow)
    assert clock_row.started_at == datetime(2025, 12, 18, 8, 38, 40, tzinfo=UTC)


def test_an_unknown_record_is_given_up_at_once_and_the_key_stays_secret(
    app, client, runtime, clock, httpserver, caplog, run_worker
):
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture)
    expect_portal(
        httpserver, "crm.lead.get", "1000983", {"error": "NOT_FOUND", "error_description": "Not found"}, status=400
    )
    caplog.set_level("DEBUG", logger="sla_guard")
    notify(client, httpserver, LEAD_ADD)
    run_worker(runtime)
    lookup = the_lookup(app)
    assert (lookup.attempts, lookup.done_at is not None) == (1, True)
    assert "HTTP 400" in lookup.last_error and B24_KEY not in lookup.last_error
    assert scheduled(runtime) == {} and stored(app) == []
    ours = [record for record in caplog.records if record.name.startswith("sla_guard")]
    assert ours and not any(B24_KEY in json.dumps(vars(record), default=str) for record in ours)


def test_a_lookup_failing_every_time_is_given_up_after_the_last_attempt(app, client, runtime, clock, httpserver):
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture)
    expect_portal(httpserver, "crm.lead.get", "1000983", {"error": "QUERY_LIMIT_EXCEEDED"}, status=503)
    notify(client, httpserver, LEAD_ADD)
    lookup_id = the_lookup(app).id
    with runtime.db.session() as session:
        session.execute(update(CrmLookupRow).values(attempts=crm_sync.LOOKUP_MAX_ATTEMPTS - 1))
    assert crm_sync.run_lookup(runtime, lookup_id) == "failed"
    lookup = the_lookup(app)
    assert lookup.attempts == crm_sync.LOOKUP_MAX_ATTEMPTS and lookup.done_at is not None
    assert "HTTP 503" in lookup.last_error
    assert crm_sync.run_lookup(runtime, lookup_id) == "skipped"


# --- amoCRM loss reasons --------------------------------------------------------------------


@pytest.mark.parametrize("amo_rest", [True])
def test_an_amocrm_loss_reason_is_read_over_rest(app, client, runtime, clock, httpserver, amo_rest, run_worker):
    httpserver.expect_oneshot_request(
        "/amo/api/v4/leads/15318175",
        method="GET",
        query_string={"with": "loss_reason"},
        headers={"Authorization": f"Bearer {AMO_ACCESS_TOKEN}"},
    ).respond_with_json(
        {
            "id": 15318175,
            "status_id": 143,
            "loss_reason_id": 7,
            "_embedded": {"loss_reason": [{"id": 7, "name": "Дорого", "sort": 1}]},
        }
    )
    clock.current = datetime(2024, 9, 17, 13, 32, tzinfo=UTC)
    closing = post(client, load("amocrm_lead_status_lost.json")).get_json()["accepted"]
    run_worker(runtime)
    httpserver.check_assertions()
    [closed, reason] = stored(app, "amocrm")
    assert (reason.event_id, reason.type, reason.reason, reason.occurred_at) == (
        f"{closing[0]}-reason",
        "lead.updated",
        "Дорого",
        closed.occurred_at,
    )
    [lead] = rows(app, LeadRow)
    assert (lead.status, lead.reason) == ("lost", "Дорого")
    post(client, load("amocrm_lead_status_lost.json"))  # a repeated delivery reads nothing again
    run_worker(runtime)
    assert len([request for request, _ in httpserver.log if request.path.startswith("/amo/")]) == 1


def expect_loss_reason(httpserver):
    httpserver.expect_oneshot_request(
        "/amo/api/v4/leads/15318175", method="GET", query_string={"with": "loss_reason"}
    ).respond_with_json(
        {"id": 15318175, "loss_reason_id": 7, "_embedded": {"loss_reason": [{"id": 7, "name": "Дорого"}]}}
    )


@pytest.mark.parametrize("amo_rest", [True])
def test_a_status_change_with_text_times_is_acknowledged_and_its_loss_reason_read(
    app, client, runtime, clock, httpserver, amo_rest, run_worker
):
    """Some amoCRM accounts send times as text: the event id then holds spaces and colons,
    which no job id may; the loss reason is still read."""
    expect_loss_reason(httpserver)
    fixture = load("amocrm_lead_status_lost.json")
    text_times = {
        "leads[status][0][updated_at]": "2024-09-17 16:31:40",
        "leads[status][0][last_modified]": "2024-09-17 16:31:40",
    }
    body = urlencode([(key, text_times.get(key, value)) for key, value in parse_qsl(fixture["request"]["body"])])
    clock.current = datetime(2024, 9, 17, 13, 32, tzinfo=UTC)
    response = post(client, fixture, body=body.encode())
    assert response.status_code == 202, response.get_data(as_text=True)
    [event_id] = response.get_json()["accepted"]
    assert " " in event_id and ":" in event_id
    run_worker(runtime)
    httpserver.check_assertions()
    [lead] = rows(app, LeadRow)
    assert (lead.status, lead.reason) == ("lost", "Дорого")


@pytest.mark.parametrize("amo_rest", [True])
def test_killing_redis_with_a_loss_reason_read_pending_loses_it_not(
    app, settings, runtime, clock, httpserver, amo_rest, killable_redis, run_worker
):
    runtime.redis = Redis.from_url(killable_redis.url)
    expect_loss_reason(httpserver)
    clock.current = datetime(2024, 9, 17, 13, 32, tzinfo=UTC)
    web = create_app({**settings, "TESTING": True, "CLOCK": clock, "REDIS_URL": killable_redis.url})
    try:
        assert post(web.test_client(), load("amocrm_lead_status_lost.json")).status_code == 202
    finally:
        web.extensions["sla_guard.db"].dispose()
    assert Queue(runtime.queue_name, connection=runtime.redis).count == 1  # the read waits in Redis
    killable_redis.restart_empty()
    assert reconcile(runtime).crm_pushes_retried == 0  # young: its own job may still come
    clock.advance(seconds=6)
    assert reconcile(runtime).crm_pushes_retried == 1
    run_worker(runtime)
    httpserver.check_assertions()
    [lead] = rows(app, LeadRow)
    assert (lead.status, lead.reason) == ("lost", "Дорого")


def test_killing_redis_with_a_lookup_pending_loses_it_not(
    app, settings, runtime, clock, httpserver, killable_redis, run_worker
):
    runtime.redis = Redis.from_url(killable_redis.url)
    fixture = load(LEAD_ADD)
    clock.current = sent_at(fixture)
    expect_portal(httpserver, "crm.lead.get", "1000983", fixture["rest_reply_crm.lead.get"])
    web = create_app({**settings, "TESTING": True, "CLOCK": clock, "REDIS_URL": killable_redis.url})
    try:
        notify(web.test_client(), httpserver, LEAD_ADD)
    finally:
        web.extensions["sla_guard.db"].dispose()
    assert Queue(runtime.queue_name, connection=runtime.redis).count == 1  # the read waits in Redis
    killable_redis.restart_empty()
    clock.advance(seconds=6)
    assert reconcile(runtime).lookups_retried == 1
    run_worker(runtime)
    httpserver.check_assertions()
    assert the_lookup(app).done_at is not None
    assert [event.type for event in stored(app)] == ["lead.created"]


def test_without_amocrm_credentials_nothing_is_read(app, client, runtime, clock, httpserver, run_worker):
    clock.current = datetime(2024, 9, 17, 13, 32, tzinfo=UTC)
    post(client, load("amocrm_lead_status_lost.json"))
    run_worker(runtime)
    assert httpserver.log == []
    [lead] = rows(app, LeadRow)
    assert (lead.status, lead.reason) == ("lost", None)


# --- from the raw creation request to the alert ----------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _hubspot_creation(client, server, created: datetime):
    """A deal created with an owner, as HubSpot reports it: the creation and the owner property."""
    common = {
        "subscriptionId": 25,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": _ms(created),
        "attemptNumber": 0,
        "objectId": 9001,
        "changeSource": "CRM_UI",
        "sourceId": "userId:77001",
    }
    body = json.dumps(
        [
            {
                **common,
                "eventId": 5002,
                "subscriptionType": "deal.propertyChange",
                "propertyName": "hubspot_owner_id",
                "propertyValue": "77001",
            },
            {**common, "eventId": 5001, "subscriptionType": "deal.creation", "changeFlag": "CREATED"},
        ]
    ).encode()
    return post(client, load("hubspot_contact_creation_batch.json"), body=body, headers=hubspot_signed(body, created))


def _pipedrive_creation(client, server, created: datetime):
    """A deal created in Pipedrive (webhooks v2, ``meta.action`` ``create``)."""
    stamp = created.isoformat().replace("+00:00", "Z")
    body = json.dumps(
        {
            "data": {
                "id": 11,
                "title": "ACME deal",
                "owner_id": 12415231,
                "creator_user_id": 12415231,
                "stage_id": 1,
                "pipeline_id": 1,
                "status": "open",
                "value": 5000,
                "currency": "EUR",
                "add_time": stamp,
                "update_time": stamp,
                "origin": "ManuallyCreated",
                "person_id": 8,
                "org_id": 1,
                "custom_fields": {},
                "label_ids": [],
                "visible_to": "3",
            },
            "previous": None,
            "meta": {
                "action": "create",
                "company_id": "8087566",
                "correlation_id": "5a0d1c2e-9f1b-4c55-8e1a-1f2b3c4d5e6f",
                "entity_id": "11",
                "entity": "deal",
                "id": "0b8f4c1e-2d3a-4b5c-9d6e-7f8a9b0c1d2e",
                "is_bulk_edit": False,
                "timestamp": stamp,
                "type": "general",
                "user_id": "12415231",
                "version": "2.0",
                "webhook_id": "4710827",
                "webhook_owner_id": "12094821",
                "change_source": "app",
                "attempt": 1,
                "host": "pd-us.pipedrive.com",
            },
        }
    ).encode()
    return post(client, load("pipedrive_v2_deal_lost.json"), body=body)


def _amocrm_creation(client, server, created: datetime):
    return post(client, load("amocrm_lead_add.json"))


def _bitrix24_creation(client, server, created: datetime):
    fixture = load(LEAD_ADD)
    expect_portal(server, "crm.lead.get", "1000983", fixture["rest_reply_crm.lead.get"])
    return post(client, fixture, body=local_portal(fixture["request"]["body"], server))


E2E = [
    # crm, how the lead is created, when the CRM says it was created, lead id, owner, link
    (
        "amocrm",
        _amocrm_creation,
        datetime(2024, 9, 17, 11, 32, 32, tzinfo=UTC),
        "amocrm:lead:15318175",
        "11087123",
        "https://acmesales.amocrm.ru/leads/detail/15318175",
    ),
    (
        "bitrix24",
        _bitrix24_creation,
        datetime(2025, 12, 18, 8, 38, 40, tzinfo=UTC),
        "bitrix24:lead:1000983",
        "17",
        None,
    ),
    (
        "hubspot",
        _hubspot_creation,
        datetime(2026, 3, 2, 9, 15, tzinfo=UTC),
        "hubspot:deal:9001",
        "77001",
        "https://app.hubspot.com/contacts/62515/record/0-3/9001",
    ),
    ("pipedrive", _pipedrive_creation, datetime(2026, 3, 2, 9, 15, tzinfo=UTC), "pipedrive:deal:11", "12415231", None),
]


@pytest.mark.parametrize("crm, create, created, lead_id, owner, link", E2E, ids=[row[0] for row in E2E])
def test_an_untouched_crm_lead_alerts_its_owner(
    sink, app, client, runtime, clock, crm, create, created, lead_id, owner, link, run_worker
):
    clock.current = created + timedelta(seconds=4)
    response = create(client, sink, created)
    assert response.status_code == 202, response.get_json()
    run_worker(runtime)
    [clock_row] = rows(app, ClockRow, ClockRow.lead_id == lead_id)
    assert (clock_row.started_at, clock_row.due_at) == (created, created + timedelta(hours=2))
    assert received(sink) == []

    clock.current = created + timedelta(hours=2, seconds=1)
    run_timer(runtime, clock_row.id)
    [alert] = received(sink)
    expected = {
        "kind": "first_touch.breach",
        "level": 1,
        "lead_id": lead_id,
        "owner": owner,
        "recipient": owner,
        "rule": "everything else",
        "late_by_s": 1,
        "lead_url": link,
    }
    assert {key: alert.get(key) for key in expected} == expected
    assert alert["due_at"] == (created + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert all(row.processed_at is not None for row in rows(app, EventRow))
