"""amoCRM / Kommo task client against a local stand-in of API v4 (``/api/v4/tasks``)."""

from __future__ import annotations

import pytest

from sla_guard.outbox.crm_tasks import AmoCrmTasks, TaskNotFound
from tests.support.crm_api import KEY, TIMEOUT_S

TOKEN = "amo-long-lived-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXT = "Follow up on the proposal for ACME\n\n[sla-guard-fu-42-1]"
HAL = "application/hal+json"
PROBLEM = "application/problem+json"


@pytest.fixture
def amo(httpserver, session, verify):
    yield AmoCrmTasks(httpserver.url_for("/"), TOKEN, session, timeout=TIMEOUT_S)
    verify(httpserver)


def task_body(owner: int = 17, lead: int = 1000983) -> list[dict]:
    return [
        {
            "text": TEXT,
            "complete_till": 1795512600,
            "entity_id": lead,
            "entity_type": "leads",
            "responsible_user_id": owner,
            "task_type_id": 1,
            "request_id": KEY,
        }
    ]


def created(task_id: int = 4745251) -> dict:
    return {
        "_links": {"self": {"href": "https://acme.amocrm.ru/api/v4/tasks"}},
        "_embedded": {
            "tasks": [
                {
                    "id": task_id,
                    "request_id": KEY,
                    "_links": {"self": {"href": f"https://acme.amocrm.ru/api/v4/tasks/{task_id}"}},
                }
            ]
        },
    }


def task(task_id: int, text: str, completed: bool = False) -> dict:
    return {
        "id": task_id,
        "created_by": 54224,
        "updated_by": 54224,
        "created_at": 1795420000,
        "updated_at": 1795420000,
        "responsible_user_id": 17,
        "group_id": 0,
        "entity_id": 1000983,
        "entity_type": "leads",
        "duration": 0,
        "is_completed": completed,
        "task_type_id": 1,
        "text": text,
        "result": [],
        "complete_till": 1795512600,
        "account_id": 321312,
        "_links": {"self": {"href": f"https://acme.amocrm.ru/api/v4/tasks/{task_id}"}},
    }


# --- create -------------------------------------------------------------------------------


def test_create_posts_one_task_and_returns_its_id(httpserver, amo, expect, follow_up):
    expect(httpserver, "POST", "/api/v4/tasks", headers=AUTH, body=task_body(), reply=created(), content_type=HAL)
    assert amo.create(follow_up()) == "4745251"


def test_create_without_owner_assigns_the_leads_responsible_user(httpserver, amo, expect, follow_up):
    expect(
        httpserver,
        "GET",
        "/api/v4/leads/1000983",
        headers=AUTH,
        content_type=HAL,
        reply={"id": 1000983, "name": "ACME", "responsible_user_id": 504141, "status_id": 142, "pipeline_id": 3177727},
    )
    expect(
        httpserver,
        "POST",
        "/api/v4/tasks",
        headers=AUTH,
        body=task_body(owner=504141),
        reply=created(),
        content_type=HAL,
    )
    assert amo.create(follow_up(owner=None, kind="lead")) == "4745251"


def test_create_for_a_deleted_lead_without_owner_is_not_found(httpserver, amo, expect, follow_up, raises_task_error):
    expect(httpserver, "GET", "/api/v4/leads/1000983", headers=AUTH, status=204)
    error = raises_task_error(lambda: amo.create(follow_up(owner=None)))
    assert isinstance(error, TaskNotFound) and not error.transient and "no lead 1000983" in str(error)


def test_validation_errors_are_permanent_and_say_what_is_wrong(httpserver, amo, expect, follow_up, raises_task_error):
    problem = {
        "validation-errors": [
            {
                "request_id": KEY,
                "errors": [
                    {
                        "code": "NotSupportedChoice",
                        "path": "responsible_user_id",
                        "detail": "The value you selected is not a valid choice.",
                    }
                ],
            }
        ],
        "title": "Bad Request",
        "type": "https://httpstatus.es/400",
        "status": 400,
        "detail": "Request validation failed",
    }
    expect(httpserver, "POST", "/api/v4/tasks", body=task_body(), status=400, reply=problem, content_type=PROBLEM)
    error = raises_task_error(lambda: amo.create(follow_up()))
    assert not error.transient and error.status == 400
    assert str(error).startswith("amoCRM: creating the task for lead 1000983")
    assert "responsible_user_id: The value you selected is not a valid choice." in str(error)


@pytest.mark.parametrize(
    "status, title, detail, says",
    [
        (401, "Unauthorized", "Unauthorized", "SLA_GUARD_AMOCRM_ACCESS_TOKEN"),
        (403, "Forbidden", "Access denied", "HTTP 403"),
    ],
)
def test_a_refused_token_or_access_is_permanent_and_never_shows_the_token(
    httpserver, amo, status, title, detail, says, expect, follow_up, raises_task_error
):
    reply = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}
    expect(httpserver, "POST", "/api/v4/tasks", status=status, content_type=PROBLEM, reply=reply)
    error = raises_task_error(lambda: amo.create(follow_up()))
    assert not error.transient and says in str(error) and TOKEN not in str(error)


@pytest.mark.parametrize("headers, wait", [({"Retry-After": "3"}, 3.0), ({}, 1.0)])
def test_rate_limit_is_transient_with_a_wait(httpserver, amo, headers, wait, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "POST",
        "/api/v4/tasks",
        status=429,
        reply_headers=headers,
        content_type=PROBLEM,
        reply={"title": "Too Many Requests", "status": 429},
    )
    error = raises_task_error(lambda: amo.create(follow_up()))
    assert error.transient and error.retry_after_s == wait and error.status == 429


def test_server_error_is_transient(httpserver, amo, expect, follow_up, raises_task_error):
    expect(
        httpserver,
        "POST",
        "/api/v4/tasks",
        status=500,
        raw="<html>Internal Server Error</html>",
        content_type="text/html",
    )
    error = raises_task_error(lambda: amo.create(follow_up()))
    assert error.transient and error.status == 500


def test_timeout_is_transient(httpserver, amo, unanswered, follow_up):
    error = unanswered(httpserver, "POST", "/api/v4/tasks", lambda: amo.create(follow_up()))
    assert error.transient and "no answer in time" in str(error)


def test_unreachable_account_is_transient(session, follow_up, raises_task_error):
    client = AmoCrmTasks("http://127.0.0.1:9", TOKEN, session, timeout=TIMEOUT_S)
    error = raises_task_error(lambda: client.create(follow_up()))
    assert error.transient and "cannot connect" in str(error) and TOKEN not in str(error)


def test_a_non_numeric_lead_id_is_refused_without_a_request(amo, follow_up, raises_task_error):
    error = raises_task_error(lambda: amo.create(follow_up(lead_id="L-1001")))
    assert not error.transient and "numeric" in str(error)


# --- find ---------------------------------------------------------------------------------

FIND_QUERY = {"filter[entity_type]": "leads", "filter[entity_id]": "1000983", "order[id]": "desc", "limit": "250"}


def test_find_returns_the_task_carrying_the_key(httpserver, amo, expect, follow_up):
    listing = {
        "_page": 1,
        "_links": {"self": {"href": "https://acme.amocrm.ru/api/v4/tasks?page=1&limit=250"}},
        "_embedded": {
            "tasks": [
                task(4745299, "Call back\n\n[sla-guard-fu-42-10]"),
                task(4745251, TEXT),
                task(4745100, "Meeting with the client"),
            ]
        },
    }
    expect(httpserver, "GET", "/api/v4/tasks", headers=AUTH, query=FIND_QUERY, reply=listing, content_type=HAL)
    assert amo.find(follow_up()) == "4745251"


def test_find_without_tasks_is_none(httpserver, amo, expect, follow_up):
    expect(httpserver, "GET", "/api/v4/tasks", query=FIND_QUERY, status=204)
    assert amo.find(follow_up()) is None


def test_find_without_a_match_is_none(httpserver, amo, expect, follow_up):
    expect(
        httpserver,
        "GET",
        "/api/v4/tasks",
        query=FIND_QUERY,
        content_type=HAL,
        reply={"_page": 1, "_embedded": {"tasks": [task(4745100, "Meeting with the client")]}},
    )
    assert amo.find(follow_up()) is None


# --- close and status ---------------------------------------------------------------------


def test_close_completes_the_task_with_a_result(httpserver, amo, expect):
    expect(
        httpserver,
        "PATCH",
        "/api/v4/tasks/4745251",
        headers=AUTH,
        content_type=HAL,
        body={"is_completed": True, "result": {"text": "Closed by sla-guard: the follow-up cadence ended."}},
        reply={
            "id": 4745251,
            "updated_at": 1795420900,
            "_links": {"self": {"href": "https://acme.amocrm.ru/api/v4/tasks/4745251"}},
        },
    )
    assert amo.close("4745251") is None


def test_close_of_a_task_already_gone_is_silent(httpserver, amo, expect):
    expect(
        httpserver,
        "PATCH",
        "/api/v4/tasks/4745251",
        status=404,
        content_type=PROBLEM,
        reply={"title": "Not Found", "type": "https://httpstatus.es/404", "status": 404, "detail": "Not Found"},
    )
    amo.close("4745251")


def test_close_failing_on_the_server_is_transient(httpserver, amo, expect, raises_task_error):
    expect(httpserver, "PATCH", "/api/v4/tasks/4745251", status=502, raw="Bad Gateway", content_type="text/plain")
    assert raises_task_error(lambda: amo.close("4745251")).transient


@pytest.mark.parametrize("completed, expected", [(True, "done"), (False, "open")])
def test_status_reads_is_completed(httpserver, amo, completed, expected, expect):
    expect(
        httpserver, "GET", "/api/v4/tasks/4745251", headers=AUTH, reply=task(4745251, TEXT, completed), content_type=HAL
    )
    assert amo.status("4745251") == expected


@pytest.mark.parametrize("status", [204, 404])
def test_status_of_a_missing_task_is_gone(httpserver, amo, status, expect):
    expect(httpserver, "GET", "/api/v4/tasks/4745251", status=status)
    assert amo.status("4745251") == "gone"


def test_status_with_a_refused_token_raises(httpserver, amo, expect, raises_task_error):
    expect(
        httpserver,
        "GET",
        "/api/v4/tasks/4745251",
        status=401,
        content_type=PROBLEM,
        reply={"title": "Unauthorized", "status": 401, "detail": "Unauthorized"},
    )
    error = raises_task_error(lambda: amo.status("4745251"))
    assert not error.transient and error.status == 401
