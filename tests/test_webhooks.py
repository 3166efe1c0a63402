"""POST /webhooks/generic on SQLite and PostgreSQL: what is acknowledged is stored, nothing else."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sla_guard import create_app
from sla_guard.store.models import EventRow


def stored(app):
    with app.extensions["sla_guard.db"].session() as session:
        return session.execute(select(func.count()).select_from(EventRow)).scalar()


def test_a_signed_event_is_stored_and_acknowledged(app, client, clock, event, post_signed):
    response = post_signed(client, event("evt-1", "lead.created", clock(), lead={"source": "website"}), clock())
    assert response.status_code == 202
    assert response.get_json() == {"accepted": ["evt-1"], "duplicates": []}
    with app.extensions["sla_guard.db"].session() as session:
        row = session.execute(select(EventRow)).scalar_one()
    assert (row.source, row.event_id, row.lead_id, row.type) == ("generic", "evt-1", "L-1001", "lead.created")
    assert row.occurred_at == clock()
    assert row.processed_at is None


def test_a_batch_and_its_duplicates(app, client, clock, event, post_signed):
    batch = [
        event("a", "lead.created", clock()),
        event("b", "lead.touched", clock(), touch={"channel": "call"}),
        event("a", "lead.created", clock()),
    ]
    response = post_signed(client, batch, clock())
    assert response.status_code == 202
    assert response.get_json() == {"accepted": ["a", "b"], "duplicates": ["a"]}
    again = post_signed(client, batch[:2], clock())
    assert again.get_json() == {"accepted": [], "duplicates": ["a", "b"]}
    assert stored(app) == 2


def test_the_same_event_id_from_another_source_is_not_a_duplicate(app, client, clock, event, post_signed):
    from sla_guard.core.events import parse_events
    from sla_guard.store.repository import insert_events

    with app.extensions["sla_guard.db"].session() as session:
        insert_events(session, "amocrm", parse_events(event("x", "lead.created", clock())), clock())
    assert post_signed(client, event("x", "lead.created", clock()), clock()).get_json()["accepted"] == ["x"]


@pytest.mark.parametrize(
    "mutate, status, field",
    [
        (lambda h, b, now: ({**h, "X-SLA-Guard-Signature": "t=1,v1=00"}, b), 401, "X-SLA-Guard-Signature"),
        (
            lambda h, b, now: ({k: v for k, v in h.items() if k != "X-SLA-Guard-Signature"}, b),
            401,
            "X-SLA-Guard-Signature",
        ),
        (lambda h, b, now: (h, b + b" "), 401, "X-SLA-Guard-Signature"),
    ],
)
def test_bad_signatures_are_refused_and_store_nothing(app, client, clock, mutate, status, field, event, webhook_secret):
    import json

    from sla_guard.security import sign

    body = json.dumps(event("e", "lead.created", clock())).encode()
    headers = {"X-SLA-Guard-Signature": sign(webhook_secret, body, int(clock().timestamp()))}
    headers, body = mutate(headers, body, clock())
    response = client.post("/webhooks/generic", data=body, content_type="application/json", headers=headers)
    assert response.status_code == status
    assert response.get_json()["field"] == field
    assert stored(app) == 0


def test_a_stale_signature_is_refused(app, client, clock, event, post_signed):
    response = post_signed(client, event("e", "lead.created", clock()), clock() - timedelta(seconds=301))
    assert response.status_code == 401
    assert "too old" in response.get_json()["error"]
    assert stored(app) == 0


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"type": "lead.created", "occurred_at": "2026-11-23T09:00:00Z", "lead": {"id": "1"}}, "event_id"),
        (
            {"event_id": "e", "type": "lead.created", "occurred_at": "2026-11-23T09:00:00", "lead": {"id": "1"}},
            "occurred_at",
        ),
        (
            [
                {"event_id": "ok", "type": "lead.created", "occurred_at": "2026-11-23T09:00:00Z", "lead": {"id": "1"}},
                {"event_id": "e", "type": "lead.created", "occurred_at": "2026-11-23T09:00:00Z", "lead": {}},
            ],
            "[1].lead.id",
        ),
    ],
)
def test_invalid_events_are_refused_whole_and_name_the_field(app, client, clock, payload, field, post_signed):
    response = post_signed(client, payload, clock())
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stored(app) == 0


def test_malformed_json(app, client, clock, post_signed):
    body = b'{"event_id": "e", '
    response = post_signed(client, body, clock())
    assert response.status_code == 400
    assert response.get_json()["field"] == "body"
    assert stored(app) == 0


def test_wrong_content_type(app, client, clock):
    response = client.post("/webhooks/generic", data=b"event_id=e", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert stored(app) == 0


def test_body_over_the_limit(settings, clock, event, post_signed):
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "SLA_GUARD_MAX_BODY_BYTES": 2048})
    payload = event("big", "lead.created", clock(), lead={"name": "x" * 1500, "url": "y" * 1500})
    response = post_signed(app.test_client(), payload, clock())
    assert response.status_code == 413
    assert response.get_json()["field"] == "body"
    assert stored(app) == 0


def test_disabled_without_a_secret(settings, clock, monkeypatch, event, post_signed):
    monkeypatch.delenv("SLA_GUARD_WEBHOOK_SECRET", raising=False)
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "SLA_GUARD_WEBHOOK_SECRET": None})
    response = post_signed(app.test_client(), event("e", "lead.created", clock()), clock())
    assert response.status_code == 404
    assert "SLA_GUARD_WEBHOOK_SECRET" in response.get_json()["error"]


def test_database_down_gives_503_so_the_crm_retries(settings, clock, event, post_signed):
    app = create_app(
        {
            **settings,
            "TESTING": True,
            "CLOCK": clock,
            "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:9/none?connect_timeout=1",
        }
    )
    response = post_signed(app.test_client(), event("e", "lead.created", clock()), clock())
    assert response.status_code == 503


def test_redis_down_still_acknowledges_and_keeps_the_event(settings, clock, event, post_signed):
    app = create_app({**settings, "TESTING": True, "CLOCK": clock, "REDIS_URL": "redis://127.0.0.1:9/0"})
    response = post_signed(app.test_client(), event("e", "lead.created", clock()), clock())
    assert response.status_code == 202
    assert stored(app) == 1
