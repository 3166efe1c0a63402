"""End to end: the real `sla-guard serve` and `sla-guard worker` processes, SLAs of seconds,
signed webhooks over HTTP, and a local HTTP server standing in for the managers' chat hook."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from sla_guard.security import sign

from .stack import Stack, wait_for

pytestmark = pytest.mark.e2e

FIRST_TOUCH_S = 3

E2E_RULES = textwrap.dedent(f"""
    timezone: UTC
    channels:
      sink: {{type: webhook, url: "${{SINK_URL}}"}}
    people:
      anna: {{manager: olga, channels: [sink]}}
      olga: {{channels: [sink]}}
    rules:
      - name: hot leads
        first_touch:
          within: {FIRST_TOUCH_S}s
          escalate: [{{after: 0s, notify: [owner]}}]
""")


@pytest.fixture
def start_stack(tmp_path, httpserver, stack_env):
    """Start `sla-guard serve` and `sla-guard worker` with the given rules text."""
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    started = []

    def start(rules_text: str) -> Stack:
        rules = tmp_path / "sla.yaml"
        rules.write_text(rules_text)
        env = {**stack_env, "SLA_GUARD_RULES": str(rules)}
        logs = tmp_path / f"logs-{len(started)}"
        logs.mkdir()
        running = Stack(env, logs)
        started.append(running)
        running.upgrade()
        running.start_web()
        running.start_worker()
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def stack(start_stack):
    return start_stack(E2E_RULES)


def post(stack: Stack, payload) -> requests.Response:
    body = json.dumps(payload).encode()
    return requests.post(
        stack.base_url + "/webhooks/generic",
        data=body,
        timeout=5,
        headers={
            "Content-Type": "application/json",
            "X-SLA-Guard-Signature": sign(stack.env["SLA_GUARD_WEBHOOK_SECRET"], body, int(time.time())),
        },
    )


def created(lead_id: str, at: datetime) -> dict:
    return {
        "event_id": f"{lead_id}-created",
        "type": "lead.created",
        "occurred_at": at.isoformat(),
        "lead": {"id": lead_id, "owner": "anna", "source": "website"},
    }


def alerts_for(httpserver, lead_id: str) -> list[tuple[float, dict]]:
    out = []
    for request, _response in httpserver.log:
        alert = json.loads(request.data)
        if alert["lead_id"] == lead_id:
            out.append(alert)
    return out


def api(stack: Stack, path: str) -> dict:
    response = requests.get(
        stack.base_url + path, headers={"Authorization": f"Bearer {stack.env['SLA_GUARD_API_TOKEN']}"}, timeout=5
    )
    response.raise_for_status()
    return response.json()


def settled(stack: Stack, lead_id: str) -> bool:
    """Nothing more is owed for the lead: no clock has a timer left, every alert is delivered."""
    response = requests.get(
        f"{stack.base_url}/api/leads/{lead_id}",
        timeout=5,
        headers={"Authorization": f"Bearer {stack.env['SLA_GUARD_API_TOKEN']}"},
    )
    if response.status_code != 200:
        return False
    lead = response.json()
    return (
        bool(lead["clocks"])
        and all(clock["next_fire_at"] is None for clock in lead["clocks"])
        and all(alert["status"] == "delivered" for alert in lead["alerts"])
    )


def passes_after(stack: Stack, count: int) -> bool:
    """Let the worker's reconciler run ``count`` more passes (one a second here; each re-arms and
    resends whatever the database says is owed). Called once :func:`settled` holds, it gives a
    duplicate the chance to show; a negative cannot be waited for otherwise."""
    time.sleep(count * float(stack.env["SLA_GUARD_RECONCILE_INTERVAL_S"]) + 1)
    return stack.worker.poll() is None


def has_clock(stack: Stack, lead_id: str) -> bool:
    response = requests.get(
        f"{stack.base_url}/api/leads/{lead_id}",
        timeout=5,
        headers={"Authorization": f"Bearer {stack.env['SLA_GUARD_API_TOKEN']}"},
    )
    return response.status_code == 200 and bool(response.json()["clocks"])


def test_untouched_lead_alerts_once_after_its_deadline_and_touched_lead_never(
    stack, httpserver, api_token, webhook_secret
):
    start = datetime.now(UTC)
    due = start + timedelta(seconds=FIRST_TOUCH_S)
    assert post(stack, [created("late", start), created("quick", start)]).status_code == 202
    duplicate = post(stack, created("late", start))
    assert duplicate.json() == {"accepted": [], "duplicates": ["late-created"]}
    touch = {
        "event_id": "quick-call",
        "type": "lead.touched",
        "occurred_at": (start + timedelta(seconds=1)).isoformat(),
        "lead": {"id": "quick"},
        "touch": {"channel": "call", "by": "anna"},
    }
    assert post(stack, touch).status_code == 202

    assert wait_for(lambda: alerts_for(httpserver, "late"), FIRST_TOUCH_S + 10), stack.logs("worker")
    arrived = datetime.now(UTC)
    [alert] = alerts_for(httpserver, "late")
    assert arrived >= due
    assert datetime.fromisoformat(alert["fired_at"]) >= due
    assert (alert["kind"], alert["level"], alert["owner"], alert["recipient"]) == (
        "first_touch.breach",
        1,
        "anna",
        "anna",
    )

    # all owed work done, then more reconciler passes: still exactly one alert, none for the touched lead
    assert wait_for(lambda: settled(stack, "late") and settled(stack, "quick"), 15), stack.logs("worker")
    assert passes_after(stack, 2), stack.logs("worker")
    assert len(alerts_for(httpserver, "late")) == 1
    assert alerts_for(httpserver, "quick") == []
    lead = api(stack, "/api/leads/late")
    assert [c["status"] for c in lead["clocks"]] == ["overdue"]
    assert [(e["kind"], e["level"]) for e in lead["escalations"]] == [("first_touch.breach", 1)]
    assert [a["status"] for a in lead["alerts"]] == ["delivered"]
    assert len(lead["events"]) == 1
    assert [item["lead_id"] for item in api(stack, "/api/leads?status=overdue")["leads"]] == ["late"]
    assert api(stack, "/api/leads/quick")["clocks"][0]["status"] == "met"
    logs = stack.logs("web") + stack.logs("worker")
    assert '"lead_id": "late"' in logs  # structured logs carry the lead id
    for secret in (webhook_secret, api_token):
        assert secret not in logs
        assert secret not in json.dumps(alert)


def test_flushall_of_redis_loses_no_alert_and_sends_no_duplicate(stack, httpserver, redis_conn):
    start = datetime.now(UTC)
    assert post(stack, created("flushed", start)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "flushed"), 5)
    redis_conn.flushall()
    assert wait_for(lambda: alerts_for(httpserver, "flushed"), FIRST_TOUCH_S + 15), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "flushed"), 15) and passes_after(stack, 2), stack.logs("worker")
    assert len(alerts_for(httpserver, "flushed")) == 1


def test_killed_worker_restarted_sends_the_due_alert_exactly_once(stack, httpserver):
    start = datetime.now(UTC)
    assert post(stack, created("crash", start)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "crash"), 5)
    stack.kill_worker()
    time.sleep(FIRST_TOUCH_S + 1)  # the deadline passes while no worker runs
    assert alerts_for(httpserver, "crash") == []
    stack.start_worker()
    assert wait_for(lambda: alerts_for(httpserver, "crash"), 15), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "crash"), 15) and passes_after(stack, 2), stack.logs("worker")
    assert len(alerts_for(httpserver, "crash")) == 1


def test_webhook_accepted_while_the_worker_is_down_is_applied_after_restart(stack, httpserver):
    stack.kill_worker()
    start = datetime.now(UTC)
    assert post(stack, created("queued", start)).status_code == 202
    stack.start_worker()
    assert wait_for(lambda: alerts_for(httpserver, "queued"), FIRST_TOUCH_S + 30), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "queued"), 15) and passes_after(stack, 2), stack.logs("worker")
    assert len(alerts_for(httpserver, "queued")) == 1


def window_rules(window_end: datetime) -> str:
    return textwrap.dedent(f"""
        timezone: UTC
        calendars:
          short-day: {{hours: {{daily: ["00:00-{window_end:%H:%M}"]}}}}
        channels:
          sink: {{type: webhook, url: "${{SINK_URL}}"}}
        people:
          anna: {{channels: [sink]}}
        rules:
          - name: office leads
            calendar: short-day
            first_touch: {{within: 2m, escalate: [{{after: 0s, notify: [owner]}}]}}
    """)


def test_a_working_window_ending_seconds_from_now_moves_the_deadline_to_the_next_window(start_stack, httpserver):
    # The window must still be open once the stack has started, however long that took: a
    # start that ate too much of it is stopped and tried again with a later window.
    for _attempt in range(3):
        now = datetime.now(UTC)
        if (now.hour, now.minute) >= (23, 57) or (now.hour, now.minute) < (0, 3):
            # keep the window inside one day, and tomorrow's window (from midnight) longer
            # than the two minutes of the SLA, so the deadline falls inside it
            start = now.replace(hour=0, minute=3, second=5, microsecond=0)
            start += timedelta(days=1) if now.hour == 23 else timedelta(0)
            time.sleep((start - now).total_seconds())
            now = datetime.now(UTC)
        window_end = (now + timedelta(seconds=80)).replace(second=0, microsecond=0)
        if window_end - now < timedelta(seconds=40):
            window_end += timedelta(minutes=1)
        stack = start_stack(window_rules(window_end))
        created_at = datetime.now(UTC).replace(microsecond=0)
        if window_end - created_at >= timedelta(seconds=15):
            break
        stack.stop()
    else:
        pytest.fail("the stack took too long to start three times over")
    assert post(stack, created("evening", created_at)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "evening"), 10), stack.logs("worker")
    left_today = window_end - created_at
    next_opening = window_end.replace(hour=0, minute=0) + timedelta(days=1)
    expected = next_opening + (timedelta(minutes=2) - left_today)
    [clock] = api(stack, "/api/leads/evening")["clocks"]
    assert datetime.fromisoformat(clock["due_at"]) == expected
    # Two minutes of wall time pass the window's end: no alert, the deadline is tomorrow.
    time.sleep(max(0.0, (window_end - datetime.now(UTC)).total_seconds()) + 3)
    assert alerts_for(httpserver, "evening") == []
    assert api(stack, "/api/leads/evening")["clocks"][0]["status"] == "running"


def test_an_idle_worker_keeps_running(stack):
    time.sleep(8)  # longer than the web's Redis socket timeout: RQ blocks on the queue meanwhile
    assert stack.worker.poll() is None, stack.logs("worker")
    assert "quitting" not in stack.logs("worker")
