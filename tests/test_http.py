"""The one HTTP layer under every channel and CRM client, against a local server: every answer
sorted into retryable, rate-limited (with the wait) or permanent, secrets never in an error,
and the pacing hook every CRM REST call passes through."""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import requests
from werkzeug import Response

from sla_guard.exceptions import CrmReadError, DeliveryError, ServiceError, TaskError, TaskNotFound
from sla_guard.ingest.adapters import bitrix24
from sla_guard.outbox.crm_tasks import AmoCrmTasks, TaskRequest
from sla_guard.outbox.http import Http, install_pacer, redact

SECRET = "s3cr3t-t0ken-value"


@pytest.fixture
def session():
    with requests.Session() as http:
        yield http


class RecordingPacer:
    """A pacer that lets everything through and remembers what it was asked."""

    def __init__(self):
        self.acquired: list[tuple[str, str]] = []
        self.limited: list[tuple[str, str, float | None]] = []

    @contextmanager
    def turn(self, service: str, account: str, cost: int = 1):
        self.acquired.append((service, account))
        yield

    def rate_limited(self, service: str, account: str, wait_s: float | None) -> None:
        self.limited.append((service, account, wait_s))

    def refused(self, service: str, account: str) -> float | None:
        return None


@pytest.fixture
def pacer():
    pacer = RecordingPacer()
    previous = install_pacer(pacer)
    yield pacer
    install_pacer(previous)


def answer(httpserver, status: int, body: str = "", headers: dict | None = None) -> requests.Response:
    httpserver.expect_oneshot_request("/api").respond_with_response(
        Response(body, status=status, headers=headers or {}, content_type="application/json")
    )
    with requests.Session() as http:
        return Http("svc", http, 2.0).request("GET", httpserver.url_for("/api"), "reading")


@pytest.mark.parametrize(
    "status, headers, kind, wait",
    [
        (429, {"Retry-After": "17"}, "rate_limited", 17.0),
        (429, {}, "rate_limited", 3.0),
        (503, {"Retry-After": "5"}, "retryable", 5.0),
        (500, {}, "retryable", 3.0),
        (408, {}, "retryable", 3.0),
        (400, {"Retry-After": "5"}, "permanent", None),
        (401, {}, "permanent", None),
        (404, {}, "permanent", None),
    ],
)
def test_every_answer_is_retryable_rate_limited_or_permanent(httpserver, status, headers, kind, wait):
    http = Http("svc", requests.Session(), 2.0, credentials="SLA_GUARD_SVC_TOKEN")
    error = http.error(answer(httpserver, status, headers=headers), "reading", retry_after_s=3.0)
    assert isinstance(error, DeliveryError) and error.status == status
    assert (error.kind, error.retry_after_s) == (kind, wait)
    assert error.transient is (kind != "permanent") and error.rate_limited is (kind == "rate_limited")
    if status == 401:
        assert "check SLA_GUARD_SVC_TOKEN" in str(error)


def test_a_retry_after_date_is_read_as_seconds(httpserver):
    later = "Wed, 21 Oct 2099 07:28:00 GMT"
    error = Http("svc", requests.Session(), 2.0).error(answer(httpserver, 429, headers={"Retry-After": later}), "x")
    assert error.retry_after_s == 3600.0  # capped: one answer never parks an item for days


def test_network_failures_are_retryable_and_never_quote_the_url(session):
    url = f"http://127.0.0.1:9/bot123456:{SECRET}/sendMessage?token={SECRET}"
    with pytest.raises(ServiceError) as info:
        Http("telegram", session, 0.5).post(url, "")
    assert info.value.kind == "retryable" and "cannot connect" in str(info.value)
    assert SECRET not in str(info.value) and "127.0.0.1" not in str(info.value)


def test_timeouts_are_retryable(httpserver, session):
    import threading

    release = threading.Event()
    httpserver.expect_request("/slow").respond_with_handler(lambda _request: release.wait(3) and Response("{}"))
    try:
        with pytest.raises(ServiceError) as info:
            Http("svc", session, 0.3).request("GET", httpserver.url_for("/slow"), "reading")
    finally:
        release.set()
    assert info.value.kind == "retryable" and "timed out" in str(info.value)


def test_secrets_are_scrubbed_from_urls_headers_and_bodies(httpserver, session):
    """The header's token, a token in a URL and a named secret, echoed back by a service."""
    httpserver.expect_request("/api").respond_with_response(
        Response(f'{{"message": "bad token Bearer {SECRET} for /bot1:{SECRET}"}}', status=400)
    )
    http = Http("svc", session, 2.0)
    response = http.request("GET", httpserver.url_for("/api"), "reading", headers={"Authorization": f"Bearer {SECRET}"})
    error = http.error(response, "reading", response.json()["message"])
    assert SECRET not in str(error) and "bad token" in str(error)
    assert redact(f"GET https://x.example/v1/deals?api_token={SECRET}&limit=5", ()) == (
        "GET https://x.example/v1/deals?api_token=***&limit=5"
    )
    assert redact(f"https://api.telegram.org/bot12:{SECRET}/sendMessage", ()) == (
        "https://api.telegram.org/bot***/sendMessage"
    )
    assert redact("password pa55word refused", ["pa55word", None, "ab"]) == "password *** refused"


def test_errors_keep_their_class_and_fields_across_processes():
    for error in (
        ServiceError("slack", "ratelimited", rate_limited=True, retry_after_s=30.0, status=200),
        TaskError("amoCRM", "x", transient=True, retry_after_s=1.5, status=503),
        TaskNotFound("Pipedrive", "reading activity 8: not found", status=404),
        CrmReadError("Bitrix24", "crm.deal.get failed", transient=True),
        DeliveryError("HTTP 503", True, 2.0),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)


# --- pacing -------------------------------------------------------------------------------


def test_every_crm_rest_call_passes_the_pacer_of_its_account(httpserver, session, pacer):
    base = httpserver.url_for("").rstrip("/")
    httpserver.expect_ordered_request("/api/v4/leads/77", method="GET").respond_with_json({"responsible_user_id": 5})
    httpserver.expect_ordered_request("/api/v4/tasks", method="POST").respond_with_response(
        Response("{}", status=429, headers={"Retry-After": "2"})
    )
    client = AmoCrmTasks(base, SECRET, session)
    task = TaskRequest(
        lead_id="77", owner=None, text="Call", due_at=datetime(2026, 11, 24, tzinfo=UTC), idempotency_key="k-1"
    )
    with pytest.raises(TaskError) as info:
        client.create(task)
    assert info.value.kind == "rate_limited" and info.value.retry_after_s == 2.0
    assert pacer.acquired == [("amoCRM", base), ("amoCRM", base)]
    assert pacer.limited == [("amoCRM", base, 2.0)]


def test_crm_read_backs_are_paced_too_and_channels_are_not(httpserver, session, pacer):
    rest_url = httpserver.url_for("/rest/1/k3y/")
    httpserver.expect_request("/rest/1/k3y/crm.lead.get.json").respond_with_json({"result": {"ID": "1"}})
    httpserver.expect_request("/hook").respond_with_data("ok")
    assert bitrix24.fetch(rest_url, "crm.lead.get", "1", session, 2.0) == {"ID": "1"}
    Http("webhook", session, 2.0).post(httpserver.url_for("/hook"), "")
    assert pacer.acquired == [("Bitrix24", rest_url)]


def test_bitrix24_query_limit_is_rate_limited(httpserver, session):
    httpserver.expect_request("/rest/1/k3y/crm.lead.get.json").respond_with_json(
        {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, status=503
    )
    with pytest.raises(bitrix24.RestError) as info:
        bitrix24.fetch(httpserver.url_for("/rest/1/k3y/"), "crm.lead.get", "1", session, 2.0)
    assert (info.value.kind, info.value.retry_after_s) == ("rate_limited", 1.0) and "k3y" not in str(info.value)
