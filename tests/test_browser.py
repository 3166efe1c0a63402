"""The dashboard in a real browser (Debian's Chromium driven by Playwright), against a scenario
whose every figure is computed by hand here, and against the JSON reports.

Set ``SLA_GUARD_SCREENSHOTS=docs/screenshots`` to keep the pages' screenshots (the README's).
"""

from __future__ import annotations

import os
import shutil
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from sla_guard.dashboard.auth import hash_password
from sla_guard.demo import DEMO_USER, seed
from sla_guard.redis_server import free_port
from sla_guard.store.db import get_db
from sla_guard.store.insight import save_user
from tests.support.databases import empty_tables

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
PAGES = ("sla", "speed", "funnel", "losses", "marketing")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture
def db_url(sqlite_url):
    """One database is enough here: the reports' SQL is tested on both elsewhere."""
    empty_tables(sqlite_url)
    return sqlite_url


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        pipelines:
          b2b: [new, qualification, proposal]
        teams:
          inbound: {members: [anna, boris]}
          outbound: {members: [carl]}
        people:
          anna: {team: inbound}
          boris: {team: inbound}
          carl: {team: outbound}
        rules:
          - name: quick
            first_touch: {within: 15m, escalate: [{after: 0m, notify: [owner]}]}
    """)


@pytest.fixture
def server(app):
    app.config["SESSION_COOKIE_SECURE"] = False
    with app.app_context():
        with get_db(app).session() as db:
            for name, role, team in (("olga", "head", None), ("ivan", "manager", "inbound")):
                save_user(db, name, hash_password(PASSWORD), role, team, "en", app.extensions["sla_guard.clock"]())
    http = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def signed_in(browser, server, name, password=PASSWORD):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server}/dashboard/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/dashboard/now")
    return page


@pytest.fixture
def scenario(client, runtime, clock, auth, event, post_signed, run_worker):
    """B1 anna: touched at 3 min, qualification, proposal, won 100. B2 anna: touched at 20 min,
    lost for price, 200. B3 boris: never touched. B4 carl: touched at 10 min, in qualification.
    Spend this month: website 300, ads 500."""
    c = clock() - timedelta(days=3)
    m = timedelta(minutes=1)
    web = {"source": "website", "pipeline": "b2b", "stage": "new", "team": "inbound"}
    ads = {"source": "ads", "pipeline": "b2b", "stage": "new"}
    events = [
        event("1c", "lead.created", c, lead_id="B1", lead={**web, "owner": "anna", "amount": 100}),
        event("1t", "lead.touched", c + 3 * m, lead_id="B1", touch={"channel": "call"}),
        event("1q", "lead.stage_changed", c + 60 * m, lead_id="B1", lead={"stage": "qualification"}),
        event("1p", "lead.stage_changed", c + 180 * m, lead_id="B1", lead={"stage": "proposal"}),
        event("1w", "lead.closed", c + 300 * m, lead_id="B1", outcome="won"),
        event("2c", "lead.created", c, lead_id="B2", lead={**web, "owner": "anna", "amount": 200}),
        event("2t", "lead.touched", c + 20 * m, lead_id="B2", touch={"channel": "call"}),
        event("2l", "lead.closed", c + 120 * m, lead_id="B2", outcome="lost", reason="price"),
        event("3c", "lead.created", c, lead_id="B3", lead={**ads, "owner": "boris", "team": "inbound"}),
        event("4c", "lead.created", c, lead_id="B4", lead={**ads, "owner": "carl", "team": "outbound", "amount": 50}),
        event("4t", "lead.touched", c + 10 * m, lead_id="B4", touch={"channel": "call"}),
        event("4q", "lead.stage_changed", c + 60 * m, lead_id="B4", lead={"stage": "qualification"}),
    ]
    assert post_signed(client, events, clock()).status_code == 202
    run_worker(runtime)
    month = c.strftime("%Y-%m")
    spend = [{"month": month, "source": "website", "amount": 300}, {"month": month, "source": "ads", "amount": 500}]
    assert client.post("/api/spend", json=spend, headers=auth).status_code == 200
    return month


def cells(page, key: str) -> dict[str, str]:
    row = page.locator(f'table.report tr[data-key="{key}"]')
    return {cell.get_attribute("data-field"): cell.inner_text().strip() for cell in row.locator("td[data-field]").all()}


def assert_page_matches_api(page, client, auth: dict, name: str) -> None:
    """Every number in the table is the JSON report's, and the chart draws the same rows."""
    query = page.url.split("?", 1)[1] if "?" in page.url else ""
    api = client.get(f"/api/reports/{name}?{query}", headers=auth).get_json()
    shown = page.locator("table.report tbody tr[data-key]").all()
    assert len(shown) == len(api["rows"])
    for tr, row in zip(shown, api["rows"], strict=True):
        for field, value in row.items():
            if field == "month" and name == "marketing":
                continue
            got = tr.locator(f'td[data-field="{field}"]').get_attribute("data-value")
            assert got == ("" if value is None else str(value)), (name, field)
    page.wait_for_selector("canvas[data-rendered=yes]")
    drawn = page.evaluate("Chart.getChart(document.querySelector('canvas')).data.datasets[0].data")
    field = {"sla": "compliance", "speed": "leads", "funnel": "entered", "losses": "lost", "marketing": "revenue"}[name]
    assert drawn == [row[field] for row in api["rows"]]
    painted = page.evaluate(
        """() => { const c = document.querySelector('canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) { if (d[i]) n++; } return n; }"""
    )
    assert painted > 500  # bars and axes were drawn


def test_a_head_sees_the_hand_computed_numbers(browser, server, client, scenario, tmp_path, auth):
    page = signed_in(browser, server, "olga")

    page.goto(f"{server}/dashboard/sla?by=owner")
    assert cells(page, "anna") | {} == {
        "owner": "anna",
        "leads": "2",
        "met": "1",
        "missed": "1",
        "overdue": "0",
        "running": "0",
        "paused": "0",
        "cancelled": "0",
        "compliance": "50%",
        "first_touch_p50_s": "3 min",
        "first_touch_p90_s": "20 min",
    }
    assert cells(page, "boris")["compliance"] == "0%" and cells(page, "boris")["overdue"] == "1"
    assert cells(page, "carl")["compliance"] == "100%" and cells(page, "carl")["first_touch_p50_s"] == "10 min"
    assert page.locator("tfoot td[data-field=compliance]").inner_text() == "50%"
    assert_page_matches_api(page, client, auth, "sla")

    page.goto(f"{server}/dashboard/speed")
    assert (cells(page, "<5m")["leads"], cells(page, "<5m")["won"], cells(page, "<5m")["revenue"]) == ("1", "1", "100")
    assert (cells(page, "5m-30m")["leads"], cells(page, "5m-30m")["lost"], cells(page, "never")["open"]) == (
        "2",
        "1",
        "1",
    )
    assert_page_matches_api(page, client, auth, "speed")

    page.goto(f"{server}/dashboard/funnel")
    assert [cells(page, s)["entered"] for s in ("new", "qualification", "proposal")] == ["4", "2", "1"]
    assert [cells(page, s)["conversion"] for s in ("new", "qualification", "proposal")] == ["50%", "50%", "100%"]
    assert cells(page, "new")["lost_here"] == "1"
    assert_page_matches_api(page, client, auth, "funnel")

    page.goto(f"{server}/dashboard/losses")
    assert cells(page, "price") | {} == {
        "reason": "price",
        "lost": "1",
        "share": "100%",
        "amount": "200",
        "after_sla_breach": "1",
    }
    assert_page_matches_api(page, client, auth, "losses")

    page.goto(f"{server}/dashboard/marketing")
    website = cells(page, f"website {scenario}")
    assert (website["leads"], website["won"], website["spend"], website["cpl"], website["cac"]) == (
        "2",
        "1",
        "300",
        "150",
        "300",
    )
    assert (website["roi"], website["ltv"], website["ltv_cac"]) == ("-66.7%", "100", "0.333")
    assert cells(page, f"ads {scenario}")["cac"] == "—"
    assert_page_matches_api(page, client, auth, "marketing")

    page.goto(f"{server}/dashboard/sla?by=owner")
    with page.expect_download() as download:
        page.click("a.csv")
    saved = tmp_path / "sla.csv"
    download.value.save_as(saved)
    assert saved.read_bytes().decode() == client.get("/api/reports/sla?by=owner&format=csv", headers=auth).get_data(
        as_text=True
    )

    page.goto(f"{server}/dashboard/now")
    row = page.locator('tr[data-lead="B3"]')
    assert "late by" in row.inner_text()
    row.locator("button").click()
    page.wait_for_url(f"{server}/dashboard/now")
    assert "acknowledged" in page.locator('tr[data-lead="B3"]').inner_text()
    assert page.locator('tr[data-lead="B1"]').count() == 0
    page.context.close()


def test_a_manager_cannot_see_another_team(browser, server, client, scenario):
    page = signed_in(browser, server, "ivan")
    page.goto(f"{server}/dashboard/sla?by=owner")
    owners = [tr.get_attribute("data-key") for tr in page.locator("table.report tbody tr[data-key]").all()]
    assert owners == ["anna", "boris"]
    page.goto(f"{server}/dashboard/sla?by=owner&team=outbound")
    assert page.locator("table.report tbody tr[data-key]").count() == 0
    page.goto(f"{server}/dashboard/speed")
    assert sum(int(td.inner_text()) for td in page.locator("td[data-field=leads]").all()) == 3  # B4 is carl's
    page.context.close()


def test_every_page_of_the_demo_month(browser, server, client, runtime, clock, tmp_path, run_worker, auth):
    """The seeded demo renders on every page with the API's numbers; screenshots for the README."""
    seed(runtime, clock(), leads=120)
    run_worker(runtime)  # the overdue leads escalate: the wall screen offers to acknowledge them
    page = signed_in(browser, server, *DEMO_USER)
    keep = os.environ.get("SLA_GUARD_SCREENSHOTS")
    for name in ("now", *PAGES):
        page.goto(f"{server}/dashboard/{name}")
        if name != "now":
            assert page.locator("table.report tbody tr[data-key]").count() > 0
            assert_page_matches_api(page, client, auth, name)
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / f"dashboard-{name}.png")
    page.context.close()
