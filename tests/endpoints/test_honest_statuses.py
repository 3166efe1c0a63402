"""Promise: every answer tells the sender the truth, and rejected input is never echoed or logged.

413 before any signature check (chunked bodies too); 503 from every endpoint that needs the
database while it is down; ``/readyz`` fails when the database cannot be written; secrets and
long rejected input stay out of answers and logs (issue 9, faults 2, 7 and 8).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from sla_guard import create_app
from sla_guard.config import of_app
from sla_guard.security import sign
from tests.support.crm_payloads import load
from tests.support.crm_requests import (
    AMO_TOKEN,
    B24_APP_TOKEN,
    PIPEDRIVE_PASSWORD,
    PIPEDRIVE_USER,
    nothing_stored,
    post,
)


def chunked_post(client, path: str, body: bytes, headers: dict, content_type="application/json"):
    """A body sent without Content-Length, as a chunked request reaches the app under gunicorn."""
    return client.post(
        path,
        input_stream=io.BytesIO(body),
        content_type=content_type,
        headers=headers,
        environ_overrides={"wsgi.input_terminated": True},
    )


def test_an_over_limit_chunked_body_with_a_valid_signature_gets_413(app, client, clock, webhook_secret, event):
    limit = of_app(app).max_body_bytes
    body = json.dumps(event("e1", "lead.created", clock(), lead={"name": "x" * limit})).encode()
    headers = {"X-SLA-Guard-Signature": sign(webhook_secret, body, int(clock().timestamp()))}
    response = chunked_post(client, "/webhooks/generic", body, headers)
    assert response.status_code == 413
    assert response.get_json()["field"] == "body"
    assert nothing_stored(app)


def test_a_chunked_body_under_the_limit_is_read_whole(app, client, clock, webhook_secret, event):
    body = json.dumps(event("e1", "lead.created", clock())).encode()
    headers = {"X-SLA-Guard-Signature": sign(webhook_secret, body, int(clock().timestamp()))}
    assert chunked_post(client, "/webhooks/generic", body, headers).status_code == 202


def test_an_over_limit_chunked_body_to_a_crm_gets_413(app, client):
    from base64 import b64encode

    limit = of_app(app).max_body_bytes
    auth = "Basic " + b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()
    body = b'{"meta": {}, "pad": "' + b"x" * limit + b'"}'
    assert chunked_post(client, "/webhooks/pipedrive", body, {"Authorization": auth}).status_code == 413


# --- the database down or read-only ---------------------------------------------------------


@pytest.fixture
def no_database(settings, clock):
    """The app pointed at a PostgreSQL server that does not answer (nothing listens on port 9)."""
    return create_app(
        {**settings, "TESTING": True, "CLOCK": clock, "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/x"}
    )


@pytest.mark.parametrize("path", ["/metrics", "/api/leads", "/api/leads/L-1", "/api/quarantine", "/api/reports/sla"])
def test_every_endpoint_that_needs_the_database_answers_503_while_it_is_down(no_database, path, auth):
    response = no_database.test_client().get(path, headers=auth)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert no_database.test_client().get("/readyz").status_code == 503


def test_webhooks_answer_503_while_the_database_is_down(no_database, clock, event, post_signed):
    body = json.dumps(event("e1", "lead.created", clock())).encode()
    response = post_signed(no_database.test_client(), body, clock())
    assert response.status_code == 503


def test_readyz_fails_when_the_database_cannot_be_written(settings, clock, sqlite_url, event, post_signed):
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "DATABASE_URL": read_only})
    client = app.test_client()
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["database"].startswith("unavailable")
    body = json.dumps(event("e1", "lead.created", clock())).encode()
    webhook = post_signed(client, body, clock())
    assert webhook.status_code == 503
    writable = create_app({**settings, "TESTING": True, "CLOCK": clock, "DATABASE_URL": sqlite_url})
    assert writable.test_client().get("/readyz").status_code == 200


# --- nothing rejected is echoed or logged -------------------------------------------------------


def logged(caplog) -> str:
    return "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)


def test_a_huge_form_key_is_neither_echoed_nor_logged(app, client, caplog):
    fixture = load("bitrix24_lead_add.json")
    key = "k[" * 5 + "x" * 500_000
    with caplog.at_level(logging.DEBUG):
        response = post(client, fixture, body=f"{key}=1".encode())
    assert response.status_code == 400
    assert len(response.get_data()) < 1000
    assert "x" * 100 not in logged(caplog)
    assert nothing_stored(app)


def test_a_json_body_to_bitrix24_never_puts_its_token_in_answers_or_logs(app, client, caplog):
    body = json.dumps({"event": "ONCRMLEADADD", "auth": {"application_token": B24_APP_TOKEN}}).encode()
    with caplog.at_level(logging.DEBUG):
        response = client.post("/webhooks/bitrix24", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401  # no token where Bitrix24 puts it
    assert B24_APP_TOKEN[:8] not in response.get_data(as_text=True)
    assert B24_APP_TOKEN[:8] not in logged(caplog)


def test_amocrm_checks_its_path_token_before_reading_the_body(app, client, caplog):
    fixture = load("amocrm_lead_add.json")
    with caplog.at_level(logging.DEBUG):
        wrong = post(client, fixture, body=b"%%%broken" + b"x" * 1000, path="/webhooks/amocrm/not-the-token")
        right = post(client, fixture, body=b"%%%broken" + b"x" * 1000)
    assert wrong.status_code == 401
    assert wrong.get_json()["field"] == "token"
    assert right.status_code == 400
    assert AMO_TOKEN not in logged(caplog)


def test_an_unexpected_error_logs_the_route_never_the_path_with_its_token(app, client, caplog):
    """A fault nobody foresaw, behind a path that carries a secret like amoCRM's: the log line
    names the route pattern, the answer is a bare 500, and the token appears nowhere."""

    def crash(token):
        raise RuntimeError("a fault nobody foresaw")

    app.add_url_rule("/webhooks/amocrm/<token>/crash", "crash_for_the_test", crash, methods=["POST"])
    with caplog.at_level(logging.DEBUG):
        response = client.post(f"/webhooks/amocrm/{AMO_TOKEN}/crash")
    assert response.status_code == 500
    assert AMO_TOKEN not in response.get_data(as_text=True)
    assert AMO_TOKEN not in logged(caplog)
    assert "/webhooks/amocrm/<token>/crash" in logged(caplog)


@pytest.mark.parametrize(
    "query", ["from=0001-01-01T00:00:00%2B01:00", "from=9999-12-31T23:59:59", "to=0001-01-01", "from=1999-01-01"]
)
def test_report_dates_outside_the_bounds_are_refused(client, query, auth):
    response = client.get(f"/api/reports/sla?{query}", headers=auth)
    assert response.status_code == 400
    assert response.get_json()["field"] == query.split("=")[0]
