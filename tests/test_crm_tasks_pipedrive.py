"""Pipedrive task client (activities of type ``task``) against a local stand-in of API v2
(``/api/v2/activities``, ``/api/v2/deals``); leads, which have no v2 yet, over ``/api/v1/leads``.
The stand-in answers every retired v1 activity or deal endpoint with 410 Gone, as Pipedrive may."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import time_machine

from sla_guard.outbox.crm_tasks import PipedriveTasks, TaskNotFound
from sla_guard.outbox.crm_tasks.pipedrive import rate_wait
from tests.support.crm_api import TIMEOUT_S

TOKEN = "659c9fddb16335e48cc67114694b52074e812e03"
AUTH = {"x-api-token": TOKEN}
NOTE = "Follow up on the proposal for ACME<br><br>[sla-guard-fu-42-1]"
LEAD = "adf21080-0e10-11eb-879b-05d71fb426ec"
INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."


RETIRED = re.compile(r"^/api/v1/(activities|deals)(/.*)?$")
"""API v1 endpoints Pipedrive retired (out of support since 2026-08-01)."""


@pytest.fixture
def pipedrive(httpserver, session, verify):
    httpserver.expect_request(RETIRED).respond_with_json(failure_body("Gone: use API v2", 410), status=410)
    yield PipedriveTasks(TOKEN, session, api_url=httpserver.url_for("/api"), timeout=TIMEOUT_S)
    verify(httpserver)
    assert [request.path for request, _ in httpserver.log if RETIRED.match(request.path)] == []


def test_the_api_url_may_be_given_without_its_final_api(session):
    assert PipedriveTasks(TOKEN, session, api_url="https://acme.pipedrive.com/").api_url == (
        "https://acme.pipedrive.com/api"
    )
    assert PipedriveTasks.from_settings({"SLA_GUARD_PIPEDRIVE_API_TOKEN": TOKEN}, session).api_url == (
        "https://api.pipedrive.com/api"
    )


def activity_input(record: dict | None = None, owner: int = 17) -> dict:
    return {
        "subject": "Follow up on the proposal for ACME",
        "type": "task",
        "due_date": "2026-11-24",
        "due_time": "09:30",
        **(record or {"deal_id": 1000983}),
        "owner_id": owner,
        "done": False,
        "note": NOTE,
    }


def activity(
    activity_id: int,
    note: str,
    *,
    done: bool = False,
    deal_id: int | None = 1000983,
    lead_id: str | None = None,
    deleted: bool = False,
) -> dict:
    return {
        "id": activity_id,
        "owner_id": 17,
        "done": done,
        "type": "task",
        "due_date": "2026-11-24",
        "due_time": "09:30",
        "duration": None,
        "subject": "Follow up on the proposal for ACME",
        "deal_id": deal_id,
        "lead_id": lead_id,
        "person_id": None,
        "org_id": None,
        "note": note,
        "is_deleted": deleted,
        "add_time": "2026-11-23T09:00:00Z",
        "update_time": "2026-11-23T09:00:00Z",
    }


def failure_body(error: str, code: int | None = None) -> dict:
    body = {"success": False, "error": error, "error_info": INFO, "data": None, "additional_data": None}
    if code:
        body["errorCode"] = code
    return body


# --- create -------------------------------------------------------------------------------


def test_create_adds_a_task_activity_on_the_deal(httpserver, pipedrive, expect, follow_up):
    expect(
        httpserver,
        "POST",
        "/api/v2/activities",
        headers=AUTH,
        query={},
        body=activity_input(),
        reply={"success": True, "data": activity(8, NOTE)},
    )
    assert pipedrive.create(follow_up()) == "8"


def test_create_on_a_lead_without_owner_reads_the_leads_owner(httpserver, pipedrive, expect, follow_up):
    expect(
        httpserver,
        "GET",
        f"/api/v1/leads/{LEAD}",
        headers=AUTH,
        reply={"success": True, "data": {"id": LEAD, "title": "ACME", "owner_id": 23, "is_archived": False}},
    )
    expect(
        httpserver,
        "POST",
        "/api/v2/activities",
        headers=AUTH,
        body=activity_input({"lead_id": LEAD}, owner=23),
        reply={"success": True, "data": activity(9, NOTE, deal_id=None, lead_id=LEAD)},
    )
    assert pipedrive.create(follow_up(lead_id=LEAD, owner=None, kind="lead")) == "9"


def test_create_on_a_deal_without_owner_reads_the_deals_user(httpserver, pipedrive, expect, follow_up):
    expect(
        httpserver,
        "GET",
        "/api/v2/deals/1000983",
        headers=AUTH,
        reply={"success": True, "data": {"id": 1000983, "title": "ACME", "owner_id": 31}},
    )
    expect(
        httpserver,
        "POST",
        "/api/v2/activities",
        body=activity_input(owner=31),
        reply={"success": True, "data": activity(10, NOTE)},
    )
    assert pipedrive.create(follow_up(owner=None)) == "10"


def test_create_on_a_deleted_deal_is_not_found(httpserver, pipedrive, expect, follow_up, raises_task_error):
    expect(httpserver, "GET", "/api/v2/deals/1000983", status=404, reply=failure_body("Deal not found"))
    assert isinstance(raises_task_error(lambda: pipedrive.create(follow_up(owner=None))), TaskNotFound)


def test_a_lead_id_must_be_a_uuid(pipedrive, follow_up, raises_task_error):
    failure = raises_task_error(lambda: pipedrive.create(follow_up(lead_id="42", kind="lead")))
    assert not failure.transient and "UUID" in str(failure)


def test_validation_error_is_permanent_and_explained(httpserver, pipedrive, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "POST",
        "/api/v2/activities",
        body=activity_input(),
        status=400,
        reply=failure_body("Invalid user_id", 400),
    )
    failure = raises_task_error(lambda: pipedrive.create(follow_up()))
    assert not failure.transient and "Invalid user_id" in str(failure) and str(failure).startswith("Pipedrive: ")


def test_refused_token_is_permanent_and_never_shown(httpserver, pipedrive, expect, follow_up, raises_task_error):
    expect(httpserver, "POST", "/api/v2/activities", status=401, reply=failure_body("unauthorized access", 401))
    failure = raises_task_error(lambda: pipedrive.create(follow_up()))
    assert not failure.transient and "SLA_GUARD_PIPEDRIVE_API_TOKEN" in str(failure) and TOKEN not in str(failure)


@pytest.mark.parametrize(
    "headers, wait",
    [
        ({"Retry-After": "5", "x-ratelimit-limit": "40", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}, 5.0),
        ({"x-ratelimit-limit": "40", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}, 1.0),
        ({}, 2.0),
    ],
)
def test_rate_limit_is_transient_with_a_wait(
    httpserver, pipedrive, headers, wait, expect, follow_up, raises_task_error
):
    expect(
        httpserver,
        "POST",
        "/api/v2/activities",
        status=429,
        reply_headers=headers,
        reply=failure_body("Request over limit", 429),
    )
    failure = raises_task_error(lambda: pipedrive.create(follow_up()))
    assert failure.transient and failure.retry_after_s == wait


@pytest.mark.parametrize(
    "now, seconds",
    [
        (datetime(2026, 11, 24, 23, 59, 30, tzinfo=UTC), 30),
        (datetime(2026, 11, 24, 0, 0, 0, tzinfo=UTC), 86400),
        (datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC), 43200),
        (datetime(2026, 12, 31, 21, 0, 0, tzinfo=UTC), 10800),  # midnight of the next year
    ],
)
def test_spent_daily_budget_waits_for_midnight_utc(now, seconds, http_answer):
    with time_machine.travel(now, tick=False):
        wait = rate_wait(http_answer(429, {"x-daily-requests-left": "0", "x-ratelimit-reset": "2"}))
    assert wait == seconds


def test_server_error_is_transient(httpserver, pipedrive, expect, follow_up, raises_task_error):
    expect(httpserver, "POST", "/api/v2/activities", status=500, reply=failure_body("Internal server error", 500))
    assert raises_task_error(lambda: pipedrive.create(follow_up())).transient


def test_timeout_is_transient(httpserver, pipedrive, unanswered, follow_up):
    failure = unanswered(httpserver, "POST", "/api/v2/activities", lambda: pipedrive.create(follow_up()))
    assert failure.transient and TOKEN not in str(failure)


# --- find ---------------------------------------------------------------------------------

FIND_QUERY = {"deal_id": "1000983", "limit": "500"}
LEAD_QUERY = {"lead_id": LEAD, "limit": "500"}


def test_find_matches_the_deal_and_the_key(httpserver, pipedrive, expect, follow_up):
    listing = {
        "success": True,
        "data": [
            activity(7, NOTE, deal_id=555),
            activity(11, "Call back<br><br>[sla-guard-fu-42-10]"),
            activity(8, NOTE),
        ],
        "additional_data": {"next_cursor": None},
    }
    expect(httpserver, "GET", "/api/v2/activities", headers=AUTH, query=FIND_QUERY, reply=listing)
    assert pipedrive.find(follow_up()) == "8"


def test_find_follows_the_cursor_to_the_next_page(httpserver, pipedrive, expect, follow_up):
    first = {"success": True, "data": [activity(7, "Other")], "additional_data": {"next_cursor": "eyJpZCI6N30"}}
    second = {"success": True, "data": [activity(8, NOTE)], "additional_data": {"next_cursor": None}}
    expect(httpserver, "GET", "/api/v2/activities", query=FIND_QUERY, reply=first)
    expect(httpserver, "GET", "/api/v2/activities", query={**FIND_QUERY, "cursor": "eyJpZCI6N30"}, reply=second)
    assert pipedrive.find(follow_up()) == "8"


def test_find_matches_a_lead(httpserver, pipedrive, expect, follow_up):
    listing = {"success": True, "data": [activity(9, NOTE, deal_id=None, lead_id=LEAD)]}
    expect(httpserver, "GET", "/api/v2/activities", query=LEAD_QUERY, reply=listing)
    assert pipedrive.find(follow_up(lead_id=LEAD.upper(), kind="lead")) == "9"


def test_find_on_an_empty_day_is_none(httpserver, pipedrive, expect, follow_up):
    expect(
        httpserver,
        "GET",
        "/api/v2/activities",
        query=FIND_QUERY,
        reply={"success": True, "data": [], "additional_data": {"next_cursor": None}},
    )
    assert pipedrive.find(follow_up()) is None


# --- close and status ---------------------------------------------------------------------


def test_close_marks_the_activity_done(httpserver, pipedrive, expect):
    expect(
        httpserver,
        "PATCH",
        "/api/v2/activities/8",
        headers=AUTH,
        body={"done": True},
        reply={"success": True, "data": activity(8, NOTE, done=True)},
    )
    assert pipedrive.close("8") is None


@pytest.mark.parametrize("status", [404, 410])
def test_close_of_an_activity_already_gone_is_silent(httpserver, pipedrive, status, expect):
    expect(httpserver, "PATCH", "/api/v2/activities/8", status=status, reply=failure_body("Activity not found", status))
    pipedrive.close("8")


def test_close_forbidden_raises(httpserver, pipedrive, expect, raises_task_error):
    expect(
        httpserver,
        "PATCH",
        "/api/v2/activities/8",
        status=403,
        reply=failure_body("You do not have permission to edit this activity", 403),
    )
    failure = raises_task_error(lambda: pipedrive.close("8"))
    assert not failure.transient and "permission" in str(failure)


@pytest.mark.parametrize(
    "done, deleted, expected", [(True, False, "done"), (False, False, "open"), (False, True, "gone")]
)
def test_status_reads_done(httpserver, pipedrive, done, deleted, expected, expect):
    expect(
        httpserver,
        "GET",
        "/api/v2/activities/8",
        headers=AUTH,
        reply={"success": True, "data": activity(8, NOTE, done=done, deleted=deleted)},
    )
    assert pipedrive.status("8") == expected


def test_status_of_a_deleted_activity_is_gone(httpserver, pipedrive, expect):
    expect(httpserver, "GET", "/api/v2/activities/8", status=404, reply=failure_body("Activity not found", 404))
    assert pipedrive.status("8") == "gone"
