"""Bitrix24 task client (CRM to-dos) against a local stand-in of the incoming-webhook REST API."""

from __future__ import annotations

import pytest

from sla_guard.outbox.crm_tasks import Bitrix24Tasks, TaskNotFound
from tests.support.crm_api import TIMEOUT_S

KEY_PART = "s3cr3tk3y"
HOOK = f"/rest/1/{KEY_PART}"
TEXT = "Follow up on the proposal for ACME\n\n[sla-guard-fu-42-1]"
TIME = {
    "start": 1795420000.1,
    "finish": 1795420000.2,
    "duration": 0.1,
    "processing": 0.05,
    "date_start": "2026-11-23T12:00:00+03:00",
    "date_finish": "2026-11-23T12:00:00+03:00",
    "operating": 0,
}


@pytest.fixture
def b24(httpserver, session, verify):
    yield Bitrix24Tasks(httpserver.url_for(f"{HOOK}/"), session, timeout=TIMEOUT_S)
    verify(httpserver)


def todo(owner_type: int = 2, responsible: int = 17) -> dict:
    return {
        "ownerTypeId": owner_type,
        "ownerId": 1000983,
        "deadline": "2026-11-24T09:30:00+00:00",
        "title": "Follow up on the proposal for ACME",
        "description": TEXT,
        "responsibleId": responsible,
    }


def activity(activity_id: str, description: str, completed: str = "N") -> dict:
    return {
        "ID": activity_id,
        "OWNER_ID": "1000983",
        "OWNER_TYPE_ID": "2",
        "TYPE_ID": "6",
        "PROVIDER_ID": "CRM_TODO",
        "PROVIDER_TYPE_ID": "TODO",
        "SUBJECT": "Follow up on the proposal for ACME",
        "COMPLETED": completed,
        "RESPONSIBLE_ID": "17",
        "DEADLINE": "2026-11-24T12:30:00+03:00",
        "DESCRIPTION": description,
        "DESCRIPTION_TYPE": "1",
        "CREATED": "2026-11-23T12:00:00+03:00",
        "LAST_UPDATED": "2026-11-23T12:00:00+03:00",
    }


def error(code: str, description: str) -> dict:
    return {"error": code, "error_description": description}


# --- create -------------------------------------------------------------------------------


def test_create_adds_a_todo_on_the_deal(httpserver, b24, expect, follow_up):
    expect(
        httpserver, "POST", f"{HOOK}/crm.activity.todo.add", body=todo(), reply={"result": {"id": 243}, "time": TIME}
    )
    assert b24.create(follow_up()) == "243"


def test_create_on_a_lead_without_owner_uses_the_leads_assignee(httpserver, b24, expect, follow_up):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.lead.get",
        body={"id": 1000983},
        reply={"result": {"ID": "1000983", "TITLE": "ACME", "STATUS_ID": "NEW", "ASSIGNED_BY_ID": "5"}, "time": TIME},
    )
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.todo.add",
        body=todo(owner_type=1, responsible=5),
        reply={"result": {"id": 244}, "time": TIME},
    )
    assert b24.create(follow_up(owner=None, kind="lead")) == "244"


def test_create_on_a_deleted_deal_is_not_found(httpserver, b24, expect, follow_up, raises_task_error):
    expect(httpserver, "POST", f"{HOOK}/crm.deal.get", body={"id": 1000983}, status=400, reply=error("", "Not found"))
    assert isinstance(raises_task_error(lambda: b24.create(follow_up(owner=None))), TaskNotFound)


@pytest.mark.parametrize(
    "status, body, transient, wait, words",
    [
        (503, error("QUERY_LIMIT_EXCEEDED", "Too many requests"), True, 1.0, "QUERY_LIMIT_EXCEEDED"),
        (500, error("INTERNAL_SERVER_ERROR", "Internal server error"), True, None, "HTTP 500"),
        (401, error("NO_AUTH_FOUND", "Wrong authorization data"), False, None, "SLA_GUARD_BITRIX24_REST_URL"),
        (
            401,
            error("expired_token", "The access token provided has expired."),
            False,
            None,
            "SLA_GUARD_BITRIX24_REST_URL",
        ),
        (
            401,
            error("insufficient_scope", "The request requires higher privileges than provided by the webhook token"),
            False,
            None,
            "crm",
        ),
        (400, error("100", "Could not find value for parameter {deadline}"), False, None, "Could not find value"),
        (503, error("OVERLOAD_LIMIT", "REST API is blocked due to overload."), False, None, "support"),
        (200, error("ACCESS_DENIED", "Access denied."), False, None, "ACCESS_DENIED"),
        (402, error("PAYMENT_REQUIRED", "REST is available only on commercial plans."), False, None, "plan"),
        (404, error("ERROR_METHOD_NOT_FOUND", "Method not found!"), False, None, "does not know this method"),
    ],
)
def test_errors_are_classified_and_keep_the_key_secret(
    httpserver, b24, status, body, transient, wait, words, expect, follow_up, raises_task_error
):
    expect(httpserver, "POST", f"{HOOK}/crm.activity.todo.add", body=todo(), status=status, reply=body)
    failure = raises_task_error(lambda: b24.create(follow_up()))
    assert failure.transient is transient and failure.retry_after_s == wait
    assert words in str(failure) and KEY_PART not in str(failure) and str(failure).startswith("Bitrix24: ")


def test_server_error_page_is_transient(httpserver, b24, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.todo.add",
        status=502,
        raw="<html>Bad Gateway</html>",
        content_type="text/html",
    )
    assert raises_task_error(lambda: b24.create(follow_up())).transient


def test_rate_limit_honours_retry_after(httpserver, b24, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.todo.add",
        status=429,
        reply_headers={"Retry-After": "4"},
        reply=error("QUERY_LIMIT_EXCEEDED", "Too many requests"),
    )
    failure = raises_task_error(lambda: b24.create(follow_up()))
    assert failure.transient and failure.retry_after_s == 4.0


def test_timeout_is_transient(httpserver, b24, unanswered, follow_up):
    failure = unanswered(httpserver, "POST", f"{HOOK}/crm.activity.todo.add", lambda: b24.create(follow_up()))
    assert failure.transient and KEY_PART not in str(failure)


# --- find ---------------------------------------------------------------------------------

LIST_BODY = {
    "filter": {"OWNER_TYPE_ID": 2, "OWNER_ID": 1000983, "PROVIDER_ID": "CRM_TODO"},
    "select": ["ID", "DESCRIPTION", "COMPLETED"],
    "order": {"ID": "DESC"},
}


def test_find_returns_the_todo_carrying_the_key(httpserver, b24, expect, follow_up):
    listing = {
        "result": [
            activity("250", "Call back\n\n[sla-guard-fu-42-10]"),
            activity("243", TEXT),
            activity("200", "Send the contract"),
        ],
        "total": 3,
        "time": TIME,
    }
    expect(httpserver, "POST", f"{HOOK}/crm.activity.list", body=LIST_BODY, reply=listing)
    assert b24.find(follow_up()) == "243"


def test_find_without_a_match_is_none(httpserver, b24, expect, follow_up):
    expect(
        httpserver, "POST", f"{HOOK}/crm.activity.list", body=LIST_BODY, reply={"result": [], "total": 0, "time": TIME}
    )
    assert b24.find(follow_up()) is None


# --- close and status ---------------------------------------------------------------------


def test_close_marks_the_todo_completed(httpserver, b24, expect):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.update",
        body={"id": 243, "fields": {"COMPLETED": "Y"}},
        reply={"result": True, "time": TIME},
    )
    assert b24.close("243") is None


def test_close_of_a_todo_already_gone_is_silent(httpserver, b24, expect):
    expect(httpserver, "POST", f"{HOOK}/crm.activity.update", status=400, reply=error("NOT_FOUND", "Not found"))
    b24.close("243")


def test_close_with_a_wrong_webhook_url_is_not_taken_for_gone(httpserver, b24, expect, raises_task_error):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.update",
        status=404,
        raw="<html>Not Found</html>",
        content_type="text/html",
    )
    failure = raises_task_error(lambda: b24.close("243"))
    assert not failure.transient and "SLA_GUARD_BITRIX24_REST_URL" in str(failure)


@pytest.mark.parametrize("completed, expected", [("Y", "done"), ("N", "open")])
def test_status_reads_completed(httpserver, b24, completed, expected, expect):
    expect(
        httpserver,
        "POST",
        f"{HOOK}/crm.activity.get",
        body={"id": 243},
        reply={"result": activity("243", TEXT, completed), "time": TIME},
    )
    assert b24.status("243") == expected


def test_status_of_a_deleted_todo_is_gone(httpserver, b24, expect):
    expect(httpserver, "POST", f"{HOOK}/crm.activity.get", body={"id": 243}, status=400, reply=error("", "Not found"))
    assert b24.status("243") == "gone"
