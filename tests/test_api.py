"""The read API and health endpoints, on both databases."""

from datetime import timedelta

from tests.support.firing import run_timer

HOT = {"source": "website", "priority": "hot", "owner": "anna", "team": "inbound"}


def test_api_requires_the_bearer_token(client, api_token):
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": api_token}):
        response = client.get("/api/leads", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["field"] == "Authorization"


def test_health_endpoints_need_no_token(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_names_what_is_down(settings, clock):
    from sla_guard import create_app

    app = create_app({**settings, "TESTING": True, "REDIS_URL": "redis://127.0.0.1:9/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "ok"
    assert response.get_json()["checks"]["redis"].startswith("unavailable")


def test_lead_timeline_and_overdue_list(client, runtime, clock, event, post_signed, run_worker, auth):
    start = clock()
    post_signed(
        client,
        [
            event("e1", "lead.created", start, lead=HOT),
            event("e2", "lead.created", start, lead_id="L-2", lead={**HOT, "owner": "boris"}),
            event(
                "e3",
                "lead.touched",
                start + timedelta(minutes=3),
                lead_id="L-2",
                touch={"channel": "call", "by": "boris"},
            ),
        ],
        start,
    )
    run_worker(runtime)
    assert client.get("/api/leads?status=overdue", headers=auth).get_json()["leads"] == []
    clock.advance(minutes=16)
    run_timer(runtime, _clock_id(client, auth))
    overdue = client.get("/api/leads?status=overdue", headers=auth).get_json()
    assert [lead["lead_id"] for lead in overdue["leads"]] == ["L-1001"]
    assert overdue["leads"][0]["open_clocks"][0]["status"] == "overdue"

    lead = client.get("/api/leads/L-1001", headers=auth).get_json()
    assert (lead["status"], lead["owner"], lead["rule"]) == ("open", "anna", "hot website leads")
    assert [e["event_id"] for e in lead["events"]] == ["e1"]
    assert [(x["level"], x["kind"]) for x in lead["escalations"]] == [
        (0, "first_touch.warning"),
        (1, "first_touch.breach"),
    ]
    assert {(a["recipient"], a["channel"]) for a in lead["alerts"]} == {("anna", "sink"), ("olga", "sink")}
    assert [item["what"] for item in lead["timeline"]][:2] == ["lead.created", "clock.started"]
    assert "first_touch.breach" in [item["what"] for item in lead["timeline"]]

    quick = client.get("/api/leads/L-2", headers=auth).get_json()
    assert quick["clocks"][0]["status"] == "met"
    assert quick["first_touch_at"] == (start + timedelta(minutes=3)).isoformat().replace("+00:00", "Z")

    report = client.get("/api/reports/sla?by=owner", headers=auth).get_json()
    by_owner = {group["owner"]: group for group in report["rows"]}
    assert by_owner["anna"]["overdue"] == 1 and by_owner["anna"]["compliance"] == 0.0
    assert by_owner["boris"]["met"] == 1 and by_owner["boris"]["compliance"] == 1.0
    assert by_owner["boris"]["first_touch_p50_s"] == 180.0


def _clock_id(client, auth):
    lead = client.get("/api/leads/L-1001", headers=auth).get_json()
    return lead["clocks"][0]["id"]


def test_unknown_lead_and_bad_parameters(client, auth):
    assert client.get("/api/leads/nope", headers=auth).status_code == 404
    response = client.get("/api/leads?status=sleeping", headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (400, "status")
    response = client.get("/api/leads?limit=0", headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (400, "limit")
    response = client.get("/api/reports/sla?by=colour", headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (400, "by")
    response = client.get("/api/reports/sla?from=last-week", headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (400, "from")


def metric(text: str, line_start: str) -> float:
    """The value of the sample whose line starts with ``line_start`` (0 when it is not there yet)."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start + " ")]
    assert len(values) <= 1, line_start
    return values[0] if values else 0.0


def test_metrics(client, runtime, clock, event, post_signed, run_worker):
    # The counters are per process and other tests count too: compare before and after.
    accepted = 'sla_guard_events_accepted_total{source="generic"}'
    duplicate = 'sla_guard_events_duplicate_total{source="generic"}'
    refused = 'sla_guard_events_rejected_total{reason="signature",source="generic"}'
    before = client.get("/metrics").get_data(as_text=True)
    assert metric(before, 'sla_guard_open_clocks{state="running"}') == 0
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    client.post("/webhooks/generic", data=b"{}", content_type="application/json")
    assert metric(client.get("/metrics").get_data(as_text=True), "sla_guard_events_unprocessed") == 1
    run_worker(runtime)
    after = client.get("/metrics").get_data(as_text=True)
    assert metric(after, accepted) - metric(before, accepted) == 1
    assert metric(after, duplicate) - metric(before, duplicate) == 1
    assert metric(after, refused) - metric(before, refused) == 1
    assert metric(after, 'sla_guard_open_clocks{state="running"}') == 1
    assert metric(after, 'sla_guard_open_clocks{state="overdue"}') == 0
    assert metric(after, "sla_guard_scheduler_lag_seconds") == 0
    assert metric(after, "sla_guard_events_unprocessed") == 0
