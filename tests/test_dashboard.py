"""The dashboard through Flask's test client: users, sign-in, CSRF, throttling, teams, pages, CSV."""

from __future__ import annotations

import re
import textwrap
from datetime import timedelta

import pytest

from sla_guard.cli import main


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        teams:
          inbound: {members: [anna]}
          outbound: {members: [carl]}
        people:
          anna: {team: inbound}
          carl: {team: outbound}
        rules:
          - name: quick
            first_touch: {within: 15m, escalate: [{after: 0m, notify: [owner]}]}
    """)


@pytest.fixture
def users(runner, settings, monkeypatch):
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    for name, role, team, locale in (
        ("head", "head", None, "en"),
        ("ivan", "manager", "inbound", "ru"),
        ("mary", "marketing", None, "en"),
    ):
        args = ["users", "add", name, "--role", role, "--locale", locale, "--password-stdin"]
        result = runner.invoke(main, args + (["--team", team] if team else []), input="correct horse battery\n")
        assert result.exit_code == 0, result.output


def csrf(client, path="/dashboard/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page)[1]


def sign_in(client, name, password="correct horse battery"):
    return client.post("/dashboard/login", data={"name": name, "password": password, "csrf_token": csrf(client)})


@pytest.fixture
def leads(client, runtime, clock, event, post_signed, run_worker):
    start = clock() - timedelta(hours=2)
    events = [
        event("a1", "lead.created", start, lead_id="A1", lead={"owner": "anna", "team": "inbound", "source": "web"}),
        event("a2", "lead.touched", start + timedelta(minutes=5), lead_id="A1", touch={"channel": "call"}),
        event("a3", "lead.created", start, lead_id="A2", lead={"owner": "anna", "team": "inbound", "source": "web"}),
        event(
            "c1",
            "lead.created",
            start,
            lead_id="C1",
            lead={"owner": "carl", "team": "outbound", "source": "ads", "url": "https://crm.example/C1"},
        ),
    ]
    assert post_signed(client, events, clock()).status_code == 202
    run_worker(runtime)


def test_users_add_refuses_bad_input(runner, settings, monkeypatch):
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    short = runner.invoke(main, ["users", "add", "x", "--role", "admin", "--password-stdin"], input="short\n")
    assert short.exit_code == 2 and "at least 8 characters" in short.output
    teamless = runner.invoke(
        main, ["users", "add", "x", "--role", "manager", "--password-stdin"], input="long enough\n"
    )
    assert teamless.exit_code == 2 and "--team" in teamless.output
    bad_role = runner.invoke(main, ["users", "add", "x", "--role", "boss", "--password-stdin"], input="long enough\n")
    assert bad_role.exit_code == 2


def test_sign_in_session_cookie_and_sign_out(client, users):
    assert client.get("/dashboard/sla").status_code == 302  # not signed in: to the sign-in page
    response = sign_in(client, "head")
    assert response.status_code == 302 and response.headers["Location"].endswith("/dashboard/now")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "correct horse" not in cookie
    assert client.get("/dashboard/now").status_code == 200
    assert client.post("/dashboard/logout").status_code == 400  # no CSRF token: refused
    token = csrf(client, "/dashboard/now")
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard/now").status_code == 302


def test_forms_need_the_csrf_token(client, users):
    response = client.post("/dashboard/login", data={"name": "head", "password": "correct horse battery"})
    assert response.status_code == 400
    assert client.get("/dashboard/now").status_code == 302
    sign_in(client, "mary")
    assert client.post("/dashboard/ack/1").status_code == 400
    assert client.post("/dashboard/spend", data={}).status_code == 400


def test_failed_sign_ins_are_throttled(client, users):
    for _ in range(5):
        assert sign_in(client, "head", "wrong password").status_code == 401
    locked = sign_in(client, "head")  # the right password no longer gets in for a while
    assert locked.status_code == 401 and "Too many failed sign-ins" in locked.get_data(as_text=True)
    unknown = sign_in(client, "nobody")
    assert unknown.status_code == 401 and "Wrong name or password" in unknown.get_data(as_text=True)


def test_an_open_redirect_is_not_followed(client, users):
    token = csrf(client)
    data = {"name": "head", "password": "correct horse battery", "csrf_token": token}
    response = client.post("/dashboard/login?next=https://evil.example/", data=data)
    assert response.headers["Location"].endswith("/dashboard/now")


def test_pages_show_the_reports_numbers(client, users, leads, auth):
    sign_in(client, "head")
    for page in ("now", "sla", "speed", "funnel", "losses", "marketing"):
        response = client.get(f"/dashboard/{page}")
        assert response.status_code == 200, page
        assert "chart.umd.min.js" in response.get_data(as_text=True) or page == "now"
    api = client.get("/api/reports/sla?by=owner", headers=auth).get_json()
    html = client.get("/dashboard/sla?by=owner").get_data(as_text=True)
    for row in api["rows"]:
        cells = _row(html, row["owner"])
        assert cells["leads"] == str(row["leads"]) and cells["compliance"] == str(row["compliance"])
    assert _row(html, "anna")["compliance"] == "0.5"  # A1 met, A2 overdue
    assert "50%" in html
    csv_text = client.get("/dashboard/sla.csv?by=owner").get_data(as_text=True)
    assert csv_text == client.get("/api/reports/sla?by=owner&format=csv", headers=auth).get_data(as_text=True)
    now = client.get("/dashboard/now").get_data(as_text=True)
    assert 'data-lead="A2"' in now and 'data-lead="C1"' in now and 'data-lead="A1"' not in now
    assert 'href="https://crm.example/C1"' in now
    assert client.get("/dashboard/sla?from=yesterday").status_code == 400


def test_a_manager_sees_only_their_team(client, users, leads):
    sign_in(client, "ivan")
    html = client.get("/dashboard/sla?by=owner").get_data(as_text=True)
    assert 'data-key="anna"' in html and 'data-key="carl"' not in html
    assert "Соблюдение SLA" in html  # Ivan reads Russian
    csv_text = client.get("/dashboard/sla.csv?by=team").get_data(as_text=True)
    assert "outbound" not in csv_text and "inbound" in csv_text
    now = client.get("/dashboard/now").get_data(as_text=True)
    assert 'data-lead="A2"' in now and 'data-lead="C1"' not in now
    assert client.post("/dashboard/spend", data={"csrf_token": csrf(client, "/dashboard/now")}).status_code == 403


def test_marketing_uploads_spend(client, users, clock):
    sign_in(client, "mary")
    month = clock().strftime("%Y-%m")
    token = csrf(client, "/dashboard/marketing")
    import io

    upload = {"csrf_token": token, "file": (io.BytesIO(f"month,source,amount\n{month},web,1200\n".encode()), "s.csv")}
    response = client.post("/dashboard/spend", data=upload, content_type="multipart/form-data")
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "1 spend rows stored" in html and _row(html, f"web {month}")["spend"] == "1200.0"
    bad = {"csrf_token": token, "file": (io.BytesIO(b"month,source,amount\n2026-11,web,lots\n"), "s.csv")}
    response = client.post("/dashboard/spend", data=bad, content_type="multipart/form-data")
    assert response.status_code == 400 and "line 2.amount" in response.get_data(as_text=True)


def _row(html: str, key: str) -> dict[str, str]:
    row = re.search(rf'<tr data-key="{re.escape(key)}">(.*?)</tr>', html, re.S)[1]
    return dict(re.findall(r'data-field="([^"]+)" data-value="([^"]*)"', row))


def test_the_demo_command_seeds_a_dashboard_to_sign_in_to(runner, settings, monkeypatch, client):
    for key, value in settings.items():
        monkeypatch.setenv(key, str(value))
    result = runner.invoke(main, ["demo", "--leads", "30"])
    assert result.exit_code == 0, result.output
    assert "demo: 30 leads" in result.output and "demo / sla-guard-demo" in result.output
    again = runner.invoke(main, ["demo", "--leads", "30"])
    assert "demo: 0 leads (0 events)" in again.output  # the same month: nothing added twice
    assert sign_in(client, "demo", "sla-guard-demo").status_code == 302
    report = client.get("/dashboard/sla.csv?by=owner").get_data(as_text=True).splitlines()
    assert sum(int(line.split(",")[1]) for line in report[1:]) == 30
