"""Spend input (API, CSV import) and the marketing report, with hand-computed CAC, ROI and LTV."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select

from sla_guard.cli import main
from sla_guard.store.models import SpendRow
from tests.support.webhooks import make_event

WINDOW = "from=2026-09-30T21:00:00Z&to=2026-11-30T21:00:00Z"  # October and November in Moscow


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: Europe/Moscow
        rules:
          - name: everything
            first_touch: {within: 2h}
    """)


def _lead(eid, lead_id, created, source, customer=None, amount=None, outcome=None, closed=None):
    lead = {"source": source, **({"customer": customer} if customer else {}), **({"amount": amount} if amount else {})}
    out = [make_event(f"{eid}c", "lead.created", at(created), lead_id=lead_id, lead=lead)]
    if outcome:
        out.append(make_event(f"{eid}x", "lead.closed", at(closed), lead_id=lead_id, outcome=outcome))
    return out


@pytest.fixture
def marketing(client, runtime, clock, auth, post_signed, run_worker):
    events = [
        *_lead("1", "M1", "2026-10-31T22:00:00", "website", "acme", 1000, "won", "2026-11-02T10:00:00"),  # Nov in MSK
        *_lead("2", "M2", "2026-11-05T10:00:00", "website", "acme", 500, "won", "2026-11-10T10:00:00"),
        *_lead("3", "M3", "2026-11-06T10:00:00", "website", None, 300, "lost", "2026-11-07T10:00:00"),
        *_lead("4", "M4", "2026-11-07T10:00:00", "website", None, 200, "won", "2026-11-08T10:00:00"),
        *_lead("5", "M5", "2026-10-31T20:00:00", "website"),  # 23:00 on 31 October in Moscow
        *_lead("6", "M6", "2026-11-10T10:00:00", "ads", "beta", 400, "won", "2026-11-11T10:00:00"),
        *_lead("7", "M7", "2026-11-12T10:00:00", "ads"),
    ]
    assert post_signed(client, events, clock()).status_code == 202
    run_worker(runtime)
    spend = [
        {"month": "2026-11", "source": "website", "amount": 600},
        {"month": "2026-11", "source": "ads", "amount": 999},
        {"month": "2026-10", "source": "website", "amount": 100},
        {"month": "2026-11", "source": "radio", "amount": 50},
    ]
    assert client.post("/api/spend", json=spend, headers=auth).get_json() == {"upserted": 4}
    fix = [{"month": "2026-11", "source": "ads", "amount": "800"}]  # a second upload corrects a row
    assert client.post("/api/spend", json=fix, headers=auth).status_code == 200


def test_marketing_every_field(client, marketing, auth):
    report = client.get(f"/api/reports/marketing?{WINDOW}", headers=auth).get_json()
    assert report["timezone"] == "Europe/Moscow"
    assert report["rows"] == [
        {
            "source": "ads",
            "month": "2026-11",
            "leads": 2,
            "won": 1,
            "revenue": 400.0,
            "conversion": 0.5,
            "spend": 800.0,
            "cpl": 400.0,
            "cac": 800.0,
            "roi": -0.5,
            "ltv": 400.0,
            "ltv_cac": 0.5,
        },
        {
            "source": "radio",
            "month": "2026-11",
            "leads": 0,
            "won": 0,
            "revenue": 0.0,
            "conversion": None,
            "spend": 50.0,
            "cpl": None,
            "cac": None,
            "roi": -1.0,
            "ltv": None,
            "ltv_cac": None,
        },
        {
            "source": "website",
            "month": "2026-10",
            "leads": 1,
            "won": 0,
            "revenue": 0.0,
            "conversion": 0.0,
            "spend": 100.0,
            "cpl": 100.0,
            "cac": None,
            "roi": -1.0,
            "ltv": None,
            "ltv_cac": None,
        },
        {
            "source": "website",
            "month": "2026-11",
            "leads": 4,
            "won": 3,
            "revenue": 1700.0,
            "conversion": 0.75,
            "spend": 600.0,
            "cpl": 150.0,
            "cac": 200.0,
            "roi": 1.8333,
            "ltv": 850.0,  # acme: 1000 + 500 first won on M1; M4 on its own: 200
            "ltv_cac": 4.25,
        },
    ]
    # a customer's lifetime counts its won leads outside the window too: M2 (5 November) for acme
    narrow = client.get("/api/reports/marketing?from=2026-09-30T21:00:00Z&to=2026-11-04T00:00:00Z", headers=auth)
    website = {row["month"]: row for row in narrow.get_json()["rows"] if row["source"] == "website"}
    assert (website["2026-11"]["leads"], website["2026-11"]["ltv"]) == (1, 1500.0)
    only_ads = client.get(f"/api/reports/marketing?{WINDOW}&source=ads", headers=auth).get_json()["rows"]
    assert [(row["source"], row["spend"]) for row in only_ads] == [("ads", 800.0)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"month": "2026-11"}, "body"),
        ([], "body"),
        (
            [{"month": "2026-11", "source": "web", "amount": 1}, {"month": "2026-13", "source": "web", "amount": 1}],
            "[1].month",
        ),
        ([{"month": "2026-11", "source": "", "amount": 1}], "[0].source"),
        ([{"month": "2026-11", "source": "web", "amount": -5}], "[0].amount"),
        ([{"month": "2026-11", "source": "web", "amount": "lots"}], "[0].amount"),
        ([{"month": "2026-11", "source": "web", "amount": True}], "[0].amount"),
    ],
)
def test_bad_spend_is_refused_and_stores_nothing(client, settings, body, field, auth):
    response = client.post("/api/spend", json=body, headers=auth)
    assert (response.status_code, response.get_json()["field"]) == (400, field)
    engine = create_engine(settings["DATABASE_URL"])
    with engine.connect() as connection:
        assert connection.execute(select(SpendRow.__table__)).all() == []
    engine.dispose()
    assert client.post("/api/spend", json=[{"month": "2026-11", "source": "w", "amount": 1}]).status_code == 401


def test_spend_import_from_csv(runner, settings, tmp_path, monkeypatch):
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    good = tmp_path / "spend.csv"
    good.write_text("month,source,amount\n2026-11,website,300000\n2026-11,ads,1 250.50\n2026-11,website,310000\n")
    result = runner.invoke(main, ["spend", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "2 spend rows stored" in result.output
    engine = create_engine(settings["DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(select(SpendRow.source, SpendRow.amount).order_by(SpendRow.source)).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [("ads", 1250.5), ("website", 310000.0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("month,source,amount\n2026-11,website,10\n2026-11,ads,ten\n")
    result = runner.invoke(main, ["spend", "import", str(bad)])
    assert result.exit_code == 2
    assert "line 3.amount: amount must be a number" in result.output
    assert runner.invoke(main, ["spend", "import", str(tmp_path / "none.csv")]).exit_code == 2
