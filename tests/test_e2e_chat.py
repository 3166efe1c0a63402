"""End to end: "Take it" pressed in Telegram and in Slack stops a running ladder, with the real
`sla-guard serve` and `sla-guard worker` processes, SLAs of seconds, and local stand-ins of the
Telegram Bot API and the Slack Web API (the presses are sent as Telegram and Slack send them)."""

from __future__ import annotations

import json
import textwrap
import time
from urllib.parse import urlencode

import pytest
import requests

from sla_guard.security import slack_signature
from tests.support.fakes import SLACK_BOT_TOKEN, TELEGRAM_TOKEN, FakeSlack, FakeTelegram
from tests.support.processes import Stack, lead_created, wait_for

pytestmark = pytest.mark.e2e

ACK_SECRET = "e2e-ack-secret-0123456789abcdef"
TG_SECRET = "e2e-telegram-secret-0123456789"
SLACK_SECRET = "e2e-slack-signing-secret-0123456789"
FIRST_TOUCH_S = 3
NEXT_LEVEL_S = 30  # room for both presses before the next level, however loaded the machine


def rules(telegram_url: str, slack_url: str) -> str:
    return textwrap.dedent(f"""
        timezone: UTC
        channels:
          tg: {{type: telegram, token: "{TELEGRAM_TOKEN}", api_url: "{telegram_url}"}}
          sl: {{type: slack, token: "{SLACK_BOT_TOKEN}", api_url: "{slack_url}"}}
        people:
          anna: {{manager: olga, channels: [tg, sl], telegram: 1001, slack: U0ANNA}}
          olga: {{channels: [tg, sl], telegram: 2001, slack: U0OLGA}}
        rules:
          - name: hot leads
            first_touch:
              within: {FIRST_TOUCH_S}s
              escalate:
                - {{after: 0s, notify: [owner]}}
                - {{after: {NEXT_LEVEL_S}s, notify: [owner, manager]}}
    """)


@pytest.fixture
def stack(start_stack, httpserver):
    telegram = FakeTelegram(chats={"1001", "2001"}).install(httpserver)
    slack = FakeSlack(channels={"U0ANNA", "U0OLGA"}).install(httpserver)
    running = start_stack(
        rules(httpserver.url_for("/").rstrip("/"), httpserver.url_for("/api")),
        SLA_GUARD_ACK_SECRET=ACK_SECRET,
        SLA_GUARD_PUBLIC_URL="https://sla.example",
        SLA_GUARD_TELEGRAM_WEBHOOK_SECRET=TG_SECRET,
        SLA_GUARD_SLACK_SIGNING_SECRET=SLACK_SECRET,
    )
    return running, telegram, slack, httpserver


def post_lead(stack: Stack, lead_id: str) -> None:
    response = stack.post(lead_created(lead_id, name=f"Lead {lead_id}", source="website"))
    assert response.status_code == 202, response.text


def escalations(stack: Stack, lead_id: str) -> list[dict]:
    lead = stack.lead(lead_id)
    return lead.get("escalations", []) if lead else []


def ladder_over(stack: Stack, lead_id: str) -> bool:
    """No clock of the lead has a timer left: its ladder's every level is decided."""
    lead = stack.lead(lead_id)
    return bool(lead) and all(clock["next_fire_at"] is None for clock in lead["clocks"])


def telegram_take(telegram, lead_name: str):
    for message_id, message in enumerate(telegram.messages, start=1):
        if message["chat_id"] in (1001, "1001") and lead_name in message["text"]:
            buttons = message["reply_markup"]["inline_keyboard"][0]
            return message_id, next(b["callback_data"] for b in buttons if "callback_data" in b)
    return None


def slack_take(slack, lead_name: str):
    for message in slack.messages:
        if message["channel"] == "U0ANNA" and lead_name in message["text"]:
            elements = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
            return next(e["value"] for e in elements if e.get("action_id") == "sla_guard.take")
    return None


def test_a_press_in_telegram_and_one_in_slack_each_stop_a_running_ladder(stack):
    running, telegram, slack, httpserver = stack
    for lead_id in ("TG-1", "SL-1", "NO-1"):
        post_lead(running, lead_id)

    found = wait_for(lambda: telegram_take(telegram, "Lead TG-1 #TG-1"))
    assert found, running.logs("worker")
    message_id, data = found
    update = {
        "update_id": 5001,
        "callback_query": {
            "id": "cb-5001",
            "from": {"id": 1001, "is_bot": False, "first_name": "Anna"},
            "message": {"message_id": message_id, "chat": {"id": 1001, "type": "private"}, "date": int(time.time())},
            "chat_instance": "1",
            "data": data,
        },
    }
    pressed = requests.post(
        running.base_url + "/chat/telegram/tg",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
        timeout=10,
    )
    assert pressed.status_code == 200 and pressed.json()["press"] == "taken", pressed.text

    value = wait_for(lambda: slack_take(slack, "Lead SL-1 #SL-1"))
    assert value, running.logs("worker")
    interaction = {
        "type": "block_actions",
        "user": {"id": "U0ANNA"},
        "actions": [{"action_id": "sla_guard.take", "value": value, "type": "button"}],
        "response_url": httpserver.url_for(FakeSlack.response_path),
    }
    body = urlencode({"payload": json.dumps(interaction)}).encode()
    timestamp = str(int(time.time()))
    pressed = requests.post(
        running.base_url + "/chat/slack",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(SLACK_SECRET, timestamp, body),
        },
        timeout=10,
    )
    assert pressed.status_code == 200, pressed.text

    # the lead nobody took climbs to level 2; the two taken leads never do: once their level 2
    # is decided too, and the reconciler has looked again with nothing left to run, still level 1
    assert wait_for(lambda: any(e["level"] == 2 for e in escalations(running, "NO-1"))), running.logs("worker")
    assert wait_for(lambda: all(ladder_over(running, lead_id) for lead_id in ("TG-1", "SL-1", "NO-1")))
    assert running.quiet_after(passes=2), running.logs("worker")
    for lead_id in ("TG-1", "SL-1"):
        rows = escalations(running, lead_id)
        assert [e["level"] for e in rows] == [1], (lead_id, rows)
        assert rows[0]["acknowledged_by"] == "anna" and rows[0]["acknowledged_at"]
    assert telegram.edits and "Taken by anna" in telegram.edits[0]["text"]
    assert slack.responses and slack.responses[0]["replace_original"] is True
