"""End to end: the real `sla-guard serve` and `sla-guard worker` processes, SLAs of seconds,
signed webhooks over HTTP, and a local HTTP server standing in for the managers' chat hook."""

from __future__ import annotations

import json
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.processes import Stack, lead_created, seconds_rules, wait_for
from tests.support.webhooks import received

pytestmark = pytest.mark.e2e

FIRST_TOUCH_S = 3


@pytest.fixture
def stack(start_stack, sink):
    return start_stack(seconds_rules(FIRST_TOUCH_S))


def created(lead_id: str, at: datetime) -> dict:
    return lead_created(lead_id, at, source="website")


def alerts_for(httpserver, lead_id: str) -> list[dict]:
    return [alert for alert in received(httpserver) if alert["lead_id"] == lead_id]


def settled(stack: Stack, lead_id: str) -> bool:
    """Nothing more is owed for the lead: no clock has a timer left, every alert is delivered."""
    lead = stack.lead(lead_id)
    return (
        lead is not None
        and bool(lead["clocks"])
        and all(clock["next_fire_at"] is None for clock in lead["clocks"])
        and all(alert["status"] == "delivered" for alert in lead["alerts"])
    )


def has_clock(stack: Stack, lead_id: str) -> bool:
    lead = stack.lead(lead_id)
    return lead is not None and bool(lead["clocks"])


def test_untouched_lead_alerts_once_after_its_deadline_and_touched_lead_never(
    stack, httpserver, api_token, webhook_secret
):
    start = datetime.now(UTC)
    due = start + timedelta(seconds=FIRST_TOUCH_S)
    assert stack.post([created("late", start), created("quick", start)]).status_code == 202
    duplicate = stack.post(created("late", start))
    assert duplicate.json() == {"accepted": [], "duplicates": ["late-created"]}
    touch = {
        "event_id": "quick-call",
        "type": "lead.touched",
        "occurred_at": (start + timedelta(seconds=1)).isoformat(),
        "lead": {"id": "quick"},
        "touch": {"channel": "call", "by": "anna"},
    }
    assert stack.post(touch).status_code == 202

    assert wait_for(lambda: alerts_for(httpserver, "late")), stack.logs("worker")
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
    assert wait_for(lambda: settled(stack, "late") and settled(stack, "quick")), stack.logs("worker")
    assert stack.quiet_after(passes=2), stack.logs("worker")
    assert len(alerts_for(httpserver, "late")) == 1
    assert alerts_for(httpserver, "quick") == []
    lead = stack.api("/api/leads/late").json()
    assert [c["status"] for c in lead["clocks"]] == ["overdue"]
    assert [(e["kind"], e["level"]) for e in lead["escalations"]] == [("first_touch.breach", 1)]
    assert [a["status"] for a in lead["alerts"]] == ["delivered"]
    assert len(lead["events"]) == 1
    assert [item["lead_id"] for item in stack.api("/api/leads?status=overdue").json()["leads"]] == ["late"]
    assert stack.api("/api/leads/quick").json()["clocks"][0]["status"] == "met"
    logs = stack.logs("web") + stack.logs("worker")
    assert '"lead_id": "late"' in logs  # structured logs carry the lead id
    for secret in (webhook_secret, api_token):
        assert secret not in logs
        assert secret not in json.dumps(alert)


def test_flushall_of_redis_loses_no_alert_and_sends_no_duplicate(stack, httpserver, redis_conn):
    start = datetime.now(UTC)
    assert stack.post(created("flushed", start)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "flushed"))
    redis_conn.flushall()
    assert wait_for(lambda: alerts_for(httpserver, "flushed")), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "flushed")) and stack.quiet_after(passes=2), stack.logs("worker")
    assert len(alerts_for(httpserver, "flushed")) == 1


def test_killed_worker_restarted_sends_the_due_alert_exactly_once(stack, httpserver):
    start = datetime.now(UTC)
    assert stack.post(created("crash", start)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "crash"))
    stack.kill_worker()
    time.sleep(FIRST_TOUCH_S + 1)  # the deadline passes while no worker runs
    assert alerts_for(httpserver, "crash") == []
    stack.start_worker()
    assert wait_for(lambda: alerts_for(httpserver, "crash")), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "crash")) and stack.quiet_after(passes=2), stack.logs("worker")
    assert len(alerts_for(httpserver, "crash")) == 1


def test_webhook_accepted_while_the_worker_is_down_is_applied_after_restart(stack, httpserver):
    stack.kill_worker()
    start = datetime.now(UTC)
    assert stack.post(created("queued", start)).status_code == 202
    stack.start_worker()
    assert wait_for(lambda: alerts_for(httpserver, "queued")), stack.logs("worker")
    assert wait_for(lambda: settled(stack, "queued")) and stack.quiet_after(passes=2), stack.logs("worker")
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


def test_a_working_window_ending_seconds_from_now_moves_the_deadline_to_the_next_window(start_stack, sink, httpserver):
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
    assert stack.post(created("evening", created_at)).status_code == 202
    assert wait_for(lambda: has_clock(stack, "evening")), stack.logs("worker")
    left_today = window_end - created_at
    next_opening = window_end.replace(hour=0, minute=0) + timedelta(days=1)
    expected = next_opening + (timedelta(minutes=2) - left_today)
    [clock] = stack.api("/api/leads/evening").json()["clocks"]
    assert datetime.fromisoformat(clock["due_at"]) == expected
    # Wall time passes the window's end and the reconciler looks again: no alert, the deadline is tomorrow.
    time.sleep(max(0.0, (window_end - datetime.now(UTC)).total_seconds()) + 1)
    assert stack.quiet_after(passes=2), stack.logs("worker")
    assert alerts_for(httpserver, "evening") == []
    assert stack.api("/api/leads/evening").json()["clocks"][0]["status"] == "running"


def test_an_idle_worker_keeps_running(stack):
    time.sleep(8)  # longer than the web's Redis socket timeout: RQ blocks on the queue meanwhile
    assert stack.worker.poll() is None, stack.logs("worker")
    assert "quitting" not in stack.logs("worker")
