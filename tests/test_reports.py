"""The reports, against a scenario whose every figure is computed by hand, on both databases."""

from __future__ import annotations

import csv
import io
import textwrap
from datetime import timedelta

import pytest
from sqlalchemy import update

from sla_guard.store.db import get_db
from sla_guard.store.models import ClockRow
from tests.support.webhooks import make_event

HOT = {"source": "website", "priority": "hot", "team": "inbound"}
ADS = {"source": "ads", "team": "outbound", "owner": "carl"}


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        channels:
          sink: {type: webhook, url: "http://127.0.0.1:9/none"}
        people:
          anna: {team: inbound, channels: [sink]}
          boris: {team: inbound, channels: [sink]}
          carl: {team: outbound, channels: [sink]}
        teams:
          inbound: {members: [anna, boris]}
          outbound: {members: [carl]}
        rules:
          - name: hot website leads
            match: {source: [website], priority: hot}
            first_touch: {within: 15m, escalate: [{after: 0m, notify: [owner]}]}
            pause_in_stages: [waiting]
          - name: everything else
            first_touch: {within: 2h, escalate: [{after: 0m, notify: [owner]}]}
    """)


def _touch(event_id, at, lead_id, by):
    return make_event(event_id, "lead.touched", at, lead_id=lead_id, touch={"channel": "call", "by": by})


def _close(event_id, at, lead_id, outcome, reason=None):
    extra = {"reason": reason} if reason else {}
    return make_event(event_id, "lead.closed", at, lead_id=lead_id, outcome=outcome, **extra)


@pytest.fixture
def scenario(client, runtime, clock, event, post_signed, run_worker):
    """Eight leads created ten days ago, an hour apart, and one created 40 days ago (outside the
    default window). Comments give each lead's first-touch time and outcome."""
    now = clock()
    c = {n: now - timedelta(days=10) + timedelta(hours=n) for n in range(1, 10)}
    m = timedelta(minutes=1)
    events = [
        # L1 anna: touched after 3 min (met), won 100
        event("1c", "lead.created", c[1], lead_id="L1", lead={**HOT, "owner": "anna", "amount": 100}),
        _touch("1t", c[1] + 3 * m, "L1", "anna"),
        _close("1w", c[1] + 60 * m, "L1", "won"),
        # L2 anna: touched after 20 min (missed), lost for price, 200
        event("2c", "lead.created", c[2], lead_id="L2", lead={**HOT, "owner": "anna", "amount": 200}),
        _touch("2t", c[2] + 20 * m, "L2", "anna"),
        _close("2l", c[2] + 90 * m, "L2", "lost", "price"),
        # L3 boris: never touched, open (overdue)
        event("3c", "lead.created", c[3], lead_id="L3", lead={**HOT, "owner": "boris", "amount": 300}),
        # L4 boris: waits for the client from minute 5 (paused), open
        event("4c", "lead.created", c[4], lead_id="L4", lead={**HOT, "owner": "boris", "stage": "new"}),
        event("4s", "lead.stage_changed", c[4] + 5 * m, lead_id="L4", lead={"stage": "waiting"}),
        # L5 carl: touched after 1 h (met), won 500
        event("5c", "lead.created", c[5], lead_id="L5", lead={**ADS, "amount": 500}),
        _touch("5t", c[5] + 60 * m, "L5", "carl"),
        _close("5w", c[5] + 5 * 60 * m, "L5", "won"),
        # L6 carl: touched after 3 h (missed), lost without a reason, 50
        event("6c", "lead.created", c[6], lead_id="L6", lead={**ADS, "amount": 50}),
        _touch("6t", c[6] + 180 * m, "L6", "carl"),
        _close("6l", c[6] + 200 * m, "L6", "lost"),
        # L7 anna: lost for price after 10 min, never touched (its clock stopped in time: met), 70
        event("7c", "lead.created", c[7], lead_id="L7", lead={**HOT, "owner": "anna", "amount": 70}),
        _close("7l", c[7] + 10 * m, "L7", "lost", "price"),
        # L9 carl: touched after two days (missed), open
        event("9c", "lead.created", c[9], lead_id="L9", lead={**ADS}),
        _touch("9t", c[9] + timedelta(days=2), "L9", "carl"),
        # L0 anna: created 40 days ago, won: outside every default window
        event("0c", "lead.created", now - timedelta(days=40), lead_id="L0", lead={**HOT, "owner": "anna"}),
        _close("0w", now - timedelta(days=39), "L0", "won"),
    ]
    assert post_signed(client, events, now).status_code == 202
    run_worker(runtime)
    return c


@pytest.fixture
def get_report(client, auth):
    """``get_report(path)``: the JSON answer of a report the API gives with 200."""

    def get(path):
        response = client.get(path, headers=auth)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return get


def test_sla_by_owner_every_field(client, scenario, get_report):
    report = get_report("/api/reports/sla?by=owner")
    assert report["report"] == "sla" and report["by"] == "owner"
    rows = {row["owner"]: row for row in report["rows"]}
    assert list(rows) == ["anna", "boris", "carl"]
    assert rows["anna"] == {
        "owner": "anna",
        "leads": 3,
        "met": 2,
        "missed": 1,
        "overdue": 0,
        "running": 0,
        "paused": 0,
        "cancelled": 0,
        "compliance": 0.6667,
        "first_touch_p50_s": 180.0,
        "first_touch_p90_s": 1200.0,
    }
    assert rows["boris"] == {
        "owner": "boris",
        "leads": 2,
        "met": 0,
        "missed": 0,
        "overdue": 1,
        "running": 0,
        "paused": 1,
        "cancelled": 0,
        "compliance": 0.0,
        "first_touch_p50_s": None,
        "first_touch_p90_s": None,
    }
    assert rows["carl"]["met"] == 1 and rows["carl"]["missed"] == 2 and rows["carl"]["compliance"] == 0.3333
    assert (rows["carl"]["first_touch_p50_s"], rows["carl"]["first_touch_p90_s"]) == (10800.0, 172800.0)
    total = report["total"]
    assert (total["leads"], total["met"], total["missed"], total["overdue"], total["paused"]) == (8, 3, 3, 1, 1)
    assert total["compliance"] == 0.4286
    assert (total["first_touch_p50_s"], total["first_touch_p90_s"]) == (3600.0, 172800.0)


def test_sla_groups_filters_and_window(client, scenario, clock, get_report):
    by_rule = {row["rule"]: row["leads"] for row in get_report("/api/reports/sla?by=rule")["rows"]}
    assert by_rule == {"everything else": 3, "hot website leads": 5}
    by_team = {row["team"]: row["compliance"] for row in get_report("/api/reports/sla?by=team")["rows"]}
    assert by_team == {"inbound": 0.5, "outbound": 0.3333}
    only = get_report("/api/reports/sla?by=source&team=outbound&owner=carl")
    assert [(row["source"], row["leads"]) for row in only["rows"]] == [("ads", 3)]
    assert only["filters"] == {"team": "outbound", "owner": "carl"}
    # the window counts leads by creation: from 60 days back, L0 (won, anna, never touched: closed in time) joins
    start = (clock() - timedelta(days=60)).isoformat()
    wide = get_report(f"/api/reports/sla?by=owner&from={start.replace('+00:00', 'Z')}")
    assert {row["owner"]: row["leads"] for row in wide["rows"]}["anna"] == 4
    narrow_to = (scenario[3] + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    narrow = get_report(f"/api/reports/sla?by=owner&to={narrow_to}&from={start.replace('+00:00', 'Z')}")
    assert {row["owner"]: row["leads"] for row in narrow["rows"]} == {"anna": 3, "boris": 1}
    weeks = get_report("/api/reports/sla?by=week")["rows"]
    assert sum(row["leads"] for row in weeks) == 8
    assert all(len(row["week"]) == 10 for row in weeks)


def test_paused_and_cancelled_first_touch_clocks_answer_200(client, scenario, app, auth, get_report):
    """A paused first-touch clock (L4 waits for the client) and a cancelled one are counted, not a 500."""
    with get_db(app).session() as session:
        session.execute(
            update(ClockRow)
            .where(ClockRow.lead_id == "L3", ClockRow.name == "first_touch")
            .values(stopped_at=scenario[3] + timedelta(minutes=1), stop_reason="cancelled")
        )
    for by in ("owner", "source", "team", "rule", "week"):
        response = client.get(f"/api/reports/sla?by={by}", headers=auth)
        assert response.status_code == 200
    boris = {row["owner"]: row for row in get_report("/api/reports/sla")["rows"]}["boris"]
    assert (boris["paused"], boris["cancelled"], boris["overdue"], boris["compliance"]) == (1, 1, 0, None)


def test_speed_buckets(client, scenario, get_report):
    report = get_report("/api/reports/speed")
    assert report["rows"] == [
        {"bucket": "<5m", "leads": 1, "won": 1, "lost": 0, "open": 0, "conversion": 1.0, "revenue": 100.0},
        {"bucket": "5m-30m", "leads": 1, "won": 0, "lost": 1, "open": 0, "conversion": 0.0, "revenue": 0.0},
        {"bucket": "30m-2h", "leads": 1, "won": 1, "lost": 0, "open": 0, "conversion": 1.0, "revenue": 500.0},
        {"bucket": "2h-1d", "leads": 1, "won": 0, "lost": 1, "open": 0, "conversion": 0.0, "revenue": 0.0},
        {"bucket": ">1d", "leads": 1, "won": 0, "lost": 0, "open": 1, "conversion": 0.0, "revenue": 0.0},
        {"bucket": "never", "leads": 3, "won": 0, "lost": 1, "open": 2, "conversion": 0.0, "revenue": 0.0},
    ]
    empty = get_report("/api/reports/speed?source=nowhere")["rows"]
    assert [row["leads"] for row in empty] == [0] * 6 and {row["conversion"] for row in empty} == {None}


def test_losses_by_reason_and_owner(client, scenario, get_report):
    report = get_report("/api/reports/losses")
    assert report["by"] == "reason" and report["total_lost"] == 3
    assert report["rows"] == [
        {"reason": "price", "lost": 2, "share": 0.6667, "amount": 270.0, "after_sla_breach": 1},
        {"reason": None, "lost": 1, "share": 0.3333, "amount": 50.0, "after_sla_breach": 1},
    ]
    owners = {row["owner"]: (row["lost"], row["amount"]) for row in get_report("/api/reports/losses?by=owner")["rows"]}
    assert owners == {"anna": (2, 270.0), "carl": (1, 50.0)}
    assert get_report("/api/reports/losses?by=stage")["rows"][0]["stage"] is None


def test_csv_download(client, scenario, auth):
    response = client.get("/api/reports/sla?by=owner&format=csv", headers=auth)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["owner"] for row in rows] == ["anna", "boris", "carl"]
    assert rows[0]["compliance"] == "0.6667" and rows[1]["first_touch_p50_s"] == ""
    losses = list(csv.reader(io.StringIO(client.get("/api/reports/losses?format=csv", headers=auth).get_data(True))))
    assert losses[0] == ["reason", "lost", "share", "amount", "after_sla_breach"]
    assert losses[2] == ["", "1", "0.3333", "50.0", "1"]


@pytest.mark.parametrize(
    ("path", "field", "status"),
    [
        ("/api/reports/sla?by=colour", "by", 400),
        ("/api/reports/losses?by=week", "by", 400),
        ("/api/reports/sla?from=last-week", "from", 400),
        ("/api/reports/sla?to=2026-13-01", "to", 400),
        ("/api/reports/sla?from=2026-02-01&to=2026-01-01", "from", 400),
        ("/api/reports/sla?from=1999-12-31", "from", 400),
        ("/api/reports/sla?format=xml", "format", 400),
        ("/api/reports/sla?team=a%00b", "team", 400),
        ("/api/reports/revenue", "name", 404),
    ],
)
def test_bad_parameters_name_the_field(client, path, field, status, auth):
    response = client.get(path, headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (status, field)


def test_reports_need_the_token(client):
    assert client.get("/api/reports/speed").status_code == 401
