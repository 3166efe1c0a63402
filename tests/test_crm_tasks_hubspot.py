"""HubSpot task client against a local stand-in of the CRM v3 objects API (``/crm/v3/objects/tasks``)."""

from __future__ import annotations

import pytest

from sla_guard.outbox.crm_tasks import HubSpotTasks, TaskNotFound
from tests.support.crm_api import TIMEOUT_S

TOKEN = "pat-eu1-0123abcd-4567-89ef-0123-456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY = "Follow up on the proposal for ACME<br><br>[sla-guard-fu-42-1]"
STAMPS = {"createdAt": "2026-11-23T12:00:00.000Z", "updatedAt": "2026-11-23T12:00:00.000Z", "archived": False}


@pytest.fixture
def hubspot(httpserver, session, verify):
    yield HubSpotTasks(TOKEN, session, api_url=httpserver.url_for("/"), timeout=TIMEOUT_S)
    verify(httpserver)


def task_input(owner: str = "17", record: str = "1000983", association: int = 216) -> dict:
    return {
        "properties": {
            "hs_timestamp": "1795512600000",
            "hs_task_subject": "Follow up on the proposal for ACME",
            "hs_task_body": BODY,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "MEDIUM",
            "hs_task_type": "TODO",
            "hubspot_owner_id": owner,
        },
        "associations": [
            {
                "to": {"id": record},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": association}],
            }
        ],
    }


def task(task_id: str, body: str, status: str = "NOT_STARTED", archived: bool = False) -> dict:
    return {
        "id": task_id,
        "properties": {
            "hs_createdate": "2026-11-23T12:00:00.000Z",
            "hs_object_id": task_id,
            "hs_task_body": body,
            "hs_task_status": status,
            "hs_lastmodifieddate": "2026-11-23T12:00:00.000Z",
        },
        **STAMPS,
        "archived": archived,
    }


def problem(category: str, message: str) -> dict:
    return {
        "status": "error",
        "message": message,
        "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
        "category": category,
    }


# --- create -------------------------------------------------------------------------------


def test_create_posts_the_task_associated_with_the_deal(httpserver, hubspot, expect, follow_up):
    expect(
        httpserver,
        "POST",
        "/crm/v3/objects/tasks",
        headers=AUTH,
        body=task_input(),
        status=201,
        reply=task("512", BODY),
    )
    assert hubspot.create(follow_up()) == "512"


def test_create_for_a_contact_lead_without_owner_reads_the_contacts_owner(httpserver, hubspot, expect, follow_up):
    expect(
        httpserver,
        "GET",
        "/crm/v3/objects/contacts/1000983",
        headers=AUTH,
        query={"properties": "hubspot_owner_id"},
        reply={
            "id": "1000983",
            "properties": {
                "createdate": "2026-11-20T08:00:00.000Z",
                "hs_object_id": "1000983",
                "hubspot_owner_id": "77001",
            },
            **STAMPS,
        },
    )
    expect(
        httpserver,
        "POST",
        "/crm/v3/objects/tasks",
        headers=AUTH,
        body=task_input(owner="77001", association=204),
        status=201,
        reply=task("513", BODY),
    )
    assert hubspot.create(follow_up(owner=None, kind="contact")) == "513"


def test_create_for_an_unowned_deal_is_refused(httpserver, hubspot, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "GET",
        "/crm/v3/objects/deals/1000983",
        query={"properties": "hubspot_owner_id"},
        reply={"id": "1000983", "properties": {"hs_object_id": "1000983", "hubspot_owner_id": None}, **STAMPS},
    )
    failure = raises_task_error(lambda: hubspot.create(follow_up(owner=None)))
    assert not failure.transient and "no owner" in str(failure)


def test_validation_error_is_permanent_and_explained(httpserver, hubspot, expect, follow_up, raises_task_error):
    message = (
        'Property values were not valid: [{"isValid":false,"message":"17 is not a valid owner id",'
        '"error":"INVALID_OWNER_ID","name":"hubspot_owner_id"}]'
    )
    expect(
        httpserver,
        "POST",
        "/crm/v3/objects/tasks",
        body=task_input(),
        status=400,
        reply=problem("VALIDATION_ERROR", message),
    )
    failure = raises_task_error(lambda: hubspot.create(follow_up()))
    assert not failure.transient and failure.status == 400
    assert "VALIDATION_ERROR" in str(failure) and "not a valid owner id" in str(failure)


@pytest.mark.parametrize(
    "status, category, message, says",
    [
        (401, "INVALID_AUTHENTICATION", "Authentication credentials not found.", "SLA_GUARD_HUBSPOT_ACCESS_TOKEN"),
        (
            403,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
            "MISSING_SCOPES",
        ),
    ],
)
def test_a_refused_token_or_scope_is_permanent_and_never_shows_the_token(
    httpserver, hubspot, status, category, message, says, expect, follow_up, raises_task_error
):
    expect(httpserver, "POST", "/crm/v3/objects/tasks", status=status, reply=problem(category, message))
    failure = raises_task_error(lambda: hubspot.create(follow_up()))
    assert not failure.transient and says in str(failure) and TOKEN not in str(failure)


@pytest.mark.parametrize(
    "policy, headers, wait",
    [
        ("SECONDLY", {"Retry-After": "2"}, 2.0),
        (
            "TEN_SECONDLY_ROLLING",
            {
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
                "X-HubSpot-RateLimit-Max": "100",
                "X-HubSpot-RateLimit-Remaining": "0",
            },
            10.0,
        ),
        ("SECONDLY", {}, 1.0),
        ("DAILY", {}, 3600.0),
    ],
)
def test_rate_limits_are_transient_with_the_right_wait(
    httpserver, hubspot, policy, headers, wait, expect, follow_up, raises_task_error
):
    body = {
        "status": "error",
        "message": "You have reached your limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c033cdaa-2c40-4a64-ae48-b4cec88dad24",
        "policyName": policy,
        "requestId": "3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd",
    }
    expect(httpserver, "POST", "/crm/v3/objects/tasks", status=429, reply=body, reply_headers=headers)
    failure = raises_task_error(lambda: hubspot.create(follow_up()))
    assert failure.transient and failure.retry_after_s == wait


def test_server_error_is_transient(httpserver, hubspot, expect, follow_up, raises_task_error):
    expect(httpserver, "POST", "/crm/v3/objects/tasks", status=500, reply=problem("INTERNAL_ERROR", "internal error"))
    assert raises_task_error(lambda: hubspot.create(follow_up())).transient


def test_timeout_is_transient(httpserver, hubspot, unanswered, follow_up):
    failure = unanswered(httpserver, "POST", "/crm/v3/objects/tasks", lambda: hubspot.create(follow_up()))
    assert failure.transient


# --- find ---------------------------------------------------------------------------------


def search_body(key: str = "associations.deal") -> dict:
    return {
        "filterGroups": [{"filters": [{"propertyName": key, "operator": "EQ", "value": "1000983"}]}],
        "properties": ["hs_task_body", "hs_task_status"],
        "sorts": [{"propertyName": "hs_createdate", "direction": "DESCENDING"}],
        "limit": 100,
    }


def test_find_searches_the_deals_tasks_for_the_key(httpserver, hubspot, expect, follow_up):
    found = {
        "total": 3,
        "results": [
            task("520", "Call back<br><br>[sla-guard-fu-42-10]"),
            task("512", BODY),
            task("400", "Send the contract"),
        ],
    }
    expect(httpserver, "POST", "/crm/v3/objects/tasks/search", headers=AUTH, body=search_body(), reply=found)
    assert hubspot.find(follow_up()) == "512"


def test_find_on_a_contact_without_a_match_is_none(httpserver, hubspot, expect, follow_up):
    expect(
        httpserver,
        "POST",
        "/crm/v3/objects/tasks/search",
        body=search_body("associations.contact"),
        reply={"total": 0, "results": []},
    )
    assert hubspot.find(follow_up(kind="contact")) is None


# --- close and status ---------------------------------------------------------------------


def test_close_sets_the_status_completed(httpserver, hubspot, expect):
    expect(
        httpserver,
        "PATCH",
        "/crm/v3/objects/tasks/512",
        headers=AUTH,
        body={"properties": {"hs_task_status": "COMPLETED"}},
        reply=task("512", BODY, "COMPLETED"),
    )
    assert hubspot.close("512") is None


def test_close_of_a_task_already_gone_is_silent(httpserver, hubspot, expect):
    expect(
        httpserver,
        "PATCH",
        "/crm/v3/objects/tasks/512",
        status=404,
        reply=problem("OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."),
    )
    hubspot.close("512")


def test_close_rate_limited_raises_transient(httpserver, hubspot, expect, raises_task_error):
    expect(
        httpserver,
        "PATCH",
        "/crm/v3/objects/tasks/512",
        status=429,
        reply_headers={"Retry-After": "1"},
        reply={
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "SECONDLY",
        },
    )
    failure = raises_task_error(lambda: hubspot.close("512"))
    assert failure.transient and failure.retry_after_s == 1.0 and not isinstance(failure, TaskNotFound)


@pytest.mark.parametrize(
    "status, archived, expected",
    [
        ("COMPLETED", False, "done"),
        ("NOT_STARTED", False, "open"),
        ("WAITING", False, "open"),
        ("NOT_STARTED", True, "gone"),
    ],
)
def test_status_reads_hs_task_status(httpserver, hubspot, status, archived, expected, expect):
    expect(
        httpserver,
        "GET",
        "/crm/v3/objects/tasks/512",
        headers=AUTH,
        query={"properties": "hs_task_status"},
        reply=task("512", BODY, status, archived),
    )
    assert hubspot.status("512") == expected


def test_status_of_a_deleted_task_is_gone(httpserver, hubspot, expect):
    expect(
        httpserver,
        "GET",
        "/crm/v3/objects/tasks/512",
        query={"properties": "hs_task_status"},
        status=404,
        reply=problem("OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."),
    )
    assert hubspot.status("512") == "gone"
