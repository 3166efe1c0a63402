"""CRM task clients: the shared request type, errors, helpers and client selection.

Also holds the helpers the per-CRM test modules use to stand a local HTTP server in for a
CRM's API: every expected request is checked exactly (method, path, headers, query string and
the JSON body with its value types) and answered as the real API answers.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import requests

from sla_guard.config import crm_settings
from sla_guard.exceptions import ConfigError, SlaGuardError
from sla_guard.outbox.crm_tasks import (
    AmoCrmTasks,
    Bitrix24Tasks,
    HubSpotTasks,
    PipedriveTasks,
    TaskClient,
    TaskError,
    TaskNotFound,
    client_for,
)
from sla_guard.outbox.crm_tasks.base import has_marker, html_with_marker, subject, with_marker
from sla_guard.outbox.http import Http, retry_after
from tests.support.crm_api import DUE, KEY

# --- the request type ---------------------------------------------------------------------


def test_due_time_is_normalised_to_utc(follow_up):
    moscow = timezone(timedelta(hours=3))
    task = follow_up(due_at=datetime(2026, 11, 24, 12, 30, tzinfo=moscow))
    assert task.due_at == DUE and task.due_at.tzinfo is UTC


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"due_at": datetime(2026, 11, 24, 9, 30)}, "timezone-aware"),
        ({"kind": "company"}, "kind"),
        ({"idempotency_key": "a]b"}, "brackets"),
        ({"lead_id": " "}, "empty"),
    ],
)
def test_invalid_requests_are_refused(changes, problem, follow_up):
    with pytest.raises(ValueError, match=problem):
        follow_up(**changes)


def test_task_error_is_an_sla_guard_error_with_retry_hints():
    error = TaskError("HubSpot", "creating the task: rate limit reached", transient=True, retry_after_s=2.0, status=429)
    assert isinstance(error, SlaGuardError)
    assert (error.transient, error.retry_after_s, error.status) == (True, 2.0, 429)
    assert str(error) == "HubSpot: creating the task: rate limit reached"


# --- helpers ------------------------------------------------------------------------------


def test_the_marker_tells_step_1_from_step_10():
    text = with_marker("Call back", "sla-guard-fu-42-10")
    assert has_marker(text, "sla-guard-fu-42-10") and not has_marker(text, "sla-guard-fu-42-1")
    assert text == "Call back\n\n[sla-guard-fu-42-10]"
    assert has_marker(None, KEY) is False


def test_html_notes_escape_the_text_and_keep_lines():
    assert html_with_marker("Offer <b>10%</b>\nthen call", KEY) == (
        "Offer &lt;b&gt;10%&lt;/b&gt;<br>then call<br><br>[sla-guard-fu-42-1]"
    )


def test_subject_is_the_first_line_shortened():
    assert subject("\n  Call ACME  \nabout the offer") == "Call ACME"
    assert subject("x" * 300, 10) == "x" * 9 + "…"


def test_retry_after_reads_seconds_and_http_dates(http_answer):
    assert retry_after(http_answer(429, {"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 110 <= retry_after(http_answer(429, {"Retry-After": later})) <= 120
    assert retry_after(http_answer(429)) is None and retry_after(http_answer(429, {"Retry-After": "soon"})) is None


@pytest.mark.parametrize(
    "status, transient",
    [
        (429, True),
        (500, True),
        (503, True),
        (408, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
    ],
)
def test_http_statuses_are_classified(status, transient, http_answer):
    http = Http("Pipedrive", requests.Session(), 1.0, ["t0ps3cret"], "SLA_GUARD_PIPEDRIVE_API_TOKEN")
    error = http.error(http_answer(status), "creating the activity", "token t0ps3cret is wrong")
    assert error.transient is transient and error.status == status
    assert "t0ps3cret" not in str(error) and str(error).startswith("Pipedrive: creating the activity")
    if status == 401:
        assert "SLA_GUARD_PIPEDRIVE_API_TOKEN" in str(error)


# --- choosing the client ------------------------------------------------------------------

ALL_SETTINGS = {
    "SLA_GUARD_AMOCRM_BASE_URL": "https://acme.amocrm.ru",
    "SLA_GUARD_AMOCRM_ACCESS_TOKEN": "amo-token",
    "SLA_GUARD_BITRIX24_REST_URL": "https://acme.bitrix24.ru/rest/1/s3cr3tk3y/",
    "SLA_GUARD_HUBSPOT_ACCESS_TOKEN": "pat-eu1-token",
    "SLA_GUARD_PIPEDRIVE_API_TOKEN": "pd-token",
    "SLA_GUARD_PIPEDRIVE_API_URL": "https://acme.pipedrive.com/api",
}


@pytest.mark.parametrize(
    "crm, client_class",
    [("amocrm", AmoCrmTasks), ("bitrix24", Bitrix24Tasks), ("hubspot", HubSpotTasks), ("pipedrive", PipedriveTasks)],
)
def test_client_for_each_crm(session, crm, client_class):
    client = client_for(crm, ALL_SETTINGS, session)
    assert isinstance(client, client_class) and isinstance(client, TaskClient)
    own = client_for(crm, crm_settings(ALL_SETTINGS, crm), session)
    assert isinstance(own, client_class)


@pytest.mark.parametrize(
    "crm, settings",
    [
        ("amocrm", {"SLA_GUARD_AMOCRM_BASE_URL": "https://acme.amocrm.ru"}),
        ("amocrm", {"SLA_GUARD_AMOCRM_ACCESS_TOKEN": "amo-token"}),
        ("bitrix24", {"SLA_GUARD_BITRIX24_APP_TOKEN": "app-token"}),
        (
            "hubspot",
            {"SLA_GUARD_HUBSPOT_CLIENT_SECRET": "secret", "SLA_GUARD_HUBSPOT_API_URL": "https://api.hubapi.com"},
        ),
        (
            "pipedrive",
            {"SLA_GUARD_PIPEDRIVE_API_URL": "https://acme.pipedrive.com/api", "SLA_GUARD_PIPEDRIVE_API_TOKEN": " "},
        ),
        ("generic", ALL_SETTINGS),
    ],
)
def test_no_client_without_rest_settings(session, crm, settings):
    assert client_for(crm, settings, session) is None


def test_defaults_and_optional_settings(session):
    hubspot = client_for("hubspot", {"SLA_GUARD_HUBSPOT_ACCESS_TOKEN": "t"}, session)
    assert hubspot.api_url == "https://api.hubapi.com"
    pipedrive = client_for(
        "pipedrive", {"SLA_GUARD_PIPEDRIVE_API_TOKEN": "t", "SLA_GUARD_PIPEDRIVE_TASK_TYPE": "follow_up"}, session
    )
    assert (pipedrive.api_url, pipedrive.task_type) == ("https://api.pipedrive.com/api", "follow_up")
    amocrm = client_for("amocrm", {**ALL_SETTINGS, "SLA_GUARD_AMOCRM_TASK_TYPE_ID": "2841"}, session)
    assert amocrm.task_type_id == 2841
    with pytest.raises(ConfigError, match="SLA_GUARD_AMOCRM_TASK_TYPE_ID"):
        client_for("amocrm", {**ALL_SETTINGS, "SLA_GUARD_AMOCRM_TASK_TYPE_ID": "call"}, session)


def test_task_errors_survive_pickling():
    error = pickle.loads(
        pickle.dumps(TaskError("amoCRM", "x: rate limit", transient=True, retry_after_s=1.5, status=429))
    )
    assert (str(error), error.transient, error.retry_after_s, error.status) == ("amoCRM: x: rate limit", True, 1.5, 429)
    gone = pickle.loads(pickle.dumps(TaskNotFound("Pipedrive", "reading activity 8: not found", status=404)))
    assert isinstance(gone, TaskNotFound) and not gone.transient and str(gone).startswith("Pipedrive: ")
