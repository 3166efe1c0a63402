"""Acting from the chat: "Take it" in Telegram and Slack acknowledges the escalation as the
acknowledge link does (the ladder stops, who and when are recorded, the message says so), and
forged, replayed, expired and strangers' presses are refused. Telegram and Slack are local
stand-ins speaking their protocols; the worker is the real RQ worker with an injected clock."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from sla_guard.core.rules.loading import parse_rules
from sla_guard.security import slack_signature
from sla_guard.store.models import AlertRow, EscalationRow
from sla_guard.timers.acknowledge import sign_press, verify_press
from sla_guard.timers.press import slack_person, telegram_person
from tests.support.fakes import SLACK_BOT_TOKEN, TELEGRAM_TOKEN, FakeSlack, FakeTelegram
from tests.support.firing import run_timer

ACK_SECRET = "test-ack-secret-0123456789abcdef"
TG_SECRET = "tg-webhook-secret-0123456789"
SLACK_SECRET = "slack-signing-secret-0123456789"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 12:00 in Moscow

RULES = textwrap.dedent(f"""
    timezone: Europe/Moscow
    channels:
      tg: {{type: telegram, token: "{TELEGRAM_TOKEN}", api_url: "${{TG_URL:-http://127.0.0.1:9}}"}}
      sl: {{type: slack, token: "{SLACK_BOT_TOKEN}", api_url: "${{SLACK_URL:-http://127.0.0.1:9}}"}}
    people:
      anna: {{manager: olga, channels: [tg, sl], telegram: 1001, slack: U0ANNA}}
      olga: {{channels: [tg, sl], telegram: 2001, slack: U0OLGA, locale: ru}}
      ivan: {{channels: [tg, sl], telegram: 3001, slack: U0IVAN}}
    rules:
      - name: hot
        match: {{priority: hot}}
        first_touch:
          within: 15m
          escalate:
            - {{after: 0m, notify: [owner, manager]}}
            - {{after: 30m, notify: [owner, manager]}}
""")
HOT = {"priority": "hot", "owner": "anna", "name": "ACME", "source": "website", "url": "https://crm.example/leads/1"}


@pytest.fixture
def rules_text():
    return RULES


@pytest.fixture
def clock(make_clock):

    return make_clock(START)


@pytest.fixture
def settings(settings):
    return {
        **settings,
        "SLA_GUARD_ACK_SECRET": ACK_SECRET,
        "SLA_GUARD_PUBLIC_URL": "https://sla.example",
        "SLA_GUARD_ACK_TTL_S": 3600,
        "SLA_GUARD_TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
        "SLA_GUARD_SLACK_SIGNING_SECRET": SLACK_SECRET,
    }


@pytest.fixture
def chats(httpserver, monkeypatch):
    monkeypatch.setenv("TG_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("SLACK_URL", httpserver.url_for("/api"))
    telegram = FakeTelegram(chats={"1001", "2001", "3001"}).install(httpserver)
    slack = FakeSlack(channels={"U0ANNA", "U0OLGA", "U0IVAN"}).install(httpserver)
    return telegram, slack, httpserver


def rows(runtime, model):
    with runtime.db.session() as session:
        return list(session.execute(select(model).order_by(model.id)).scalars())


def telegram_button(telegram, chat_id: str) -> tuple[int, str]:
    """(message id, callback data of "Take it") of the alert sent to ``chat_id``."""
    for message_id, message in enumerate(telegram.messages, start=1):
        if str(message["chat_id"]) == chat_id:
            [take] = [b for b in message["reply_markup"]["inline_keyboard"][0] if "callback_data" in b]
            return message_id, take["callback_data"]
    raise AssertionError(f"no message to {chat_id}")


def press_telegram(client, update_id, user_id, data, chat_id=1001, message_id=1, secret=TG_SECRET, username=None):
    update = {
        "update_id": update_id,
        "callback_query": {
            "id": f"cb-{update_id}",
            "from": {"id": user_id, "is_bot": False, "first_name": "X", **({"username": username} if username else {})},
            "message": {"message_id": message_id, "chat": {"id": chat_id, "type": "private"}, "date": 0},
            "chat_instance": "1",
            "data": data,
        },
    }
    return client.post("/chat/telegram/tg", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret})


def slack_button(slack, member: str) -> str:
    for message in slack.messages:
        if message["channel"] == member:
            [take] = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if "value" in e]
            return take["value"]
    raise AssertionError(f"no message to {member}")


def press_slack(client, httpserver, clock, member, value, secret=SLACK_SECRET, at=None):
    interaction = {
        "type": "block_actions",
        "user": {"id": member, "username": member.lower(), "team_id": "T000"},
        "actions": [{"action_id": "sla_guard.take", "block_id": "b", "value": value, "type": "button"}],
        "response_url": httpserver.url_for(FakeSlack.response_path),
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": member},
    }
    body = urlencode({"payload": json.dumps(interaction)}).encode()
    timestamp = str(int((at or clock()).timestamp()))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return client.post("/chat/slack", data=body, headers=headers)


def escalation(runtime, level=1) -> EscalationRow:
    return next(row for row in rows(runtime, EscalationRow) if row.level == level)


# --- pure -------------------------------------------------------------------------------------


def test_a_press_value_fits_telegram_and_cannot_be_altered():
    value = sign_press(ACK_SECRET, 123456789, START + timedelta(hours=24))
    assert len(value.encode()) <= 64
    assert verify_press(ACK_SECRET, value, START) == (123456789, START + timedelta(hours=24))
    from sla_guard.timers.acknowledge import BadToken, ExpiredToken

    for forged in (
        value.replace("p1.123456789", "p1.123456780"),
        value[:-1] + ("B" if value.endswith("A") else "A"),
        "p1.1.2",
        "x",
    ):
        with pytest.raises(BadToken):
            verify_press(ACK_SECRET, forged, START)
    with pytest.raises(ExpiredToken):
        verify_press(ACK_SECRET, value, START + timedelta(hours=24))


def test_pressers_are_found_by_their_chat_identity():
    rules = parse_rules(RULES.replace("telegram: 3001", 'telegram: "@Ivan_K"'), env={})
    assert telegram_person(rules, 1001, None) == "anna"
    assert telegram_person(rules, 777, "ivan_k") == "ivan"
    assert telegram_person(rules, 777, "nobody") is None
    assert slack_person(rules, "U0OLGA") == "olga" and slack_person(rules, "U0XXXX") is None


# --- Telegram ---------------------------------------------------------------------------------


def test_take_it_in_telegram_stops_the_ladder_and_edits_the_message(chats, client, runtime, clock, first_breach):
    telegram, _, _ = chats
    clock_id = first_breach(client, runtime, clock, HOT)
    message_id, data = telegram_button(telegram, "1001")
    clock.advance(minutes=1)
    pressed_at = clock()
    response = press_telegram(client, 1, 1001, data, message_id=message_id)
    assert response.status_code == 200 and response.get_json()["press"] == "taken"
    row = escalation(runtime)
    assert (row.acknowledged_by, row.acknowledged_at) == ("anna", pressed_at)
    [edit] = telegram.edits
    assert (str(edit["chat_id"]), edit["message_id"], edit["parse_mode"]) == ("1001", message_id, "HTML")
    assert edit["text"].endswith("✅ Taken by anna at 12:17.")
    assert [b["text"] for b in edit["reply_markup"]["inline_keyboard"][0]] == ["Open lead"]
    [answer] = telegram.answers
    assert answer["callback_query_id"] == "cb-1" and "is yours, anna" in answer["text"]

    sent = len(telegram.messages)
    clock.advance(minutes=40)  # level 2 would have fired 30 minutes after the deadline
    run_timer(runtime, clock_id)
    assert len(telegram.messages) == sent and [r.level for r in rows(runtime, EscalationRow)] == [1]


def test_telegram_refuses_forged_replayed_expired_and_strangers_presses(chats, client, runtime, clock, first_breach):
    telegram, _, _ = chats
    first_breach(client, runtime, clock, HOT)
    message_id, data = telegram_button(telegram, "1001")

    assert press_telegram(client, 1, 1001, data, secret="wrong-secret-0123456789").status_code == 401
    assert press_telegram(client, 2, 1001, data[:-2] + "xx").get_json()["press"] == "invalid"
    assert press_telegram(client, 3, 3001, data, chat_id=3001).get_json()["press"] == "not_recipient"
    assert escalation(runtime).acknowledged_at is None
    assert [a["show_alert"] for a in telegram.answers] == [True, True]
    assert "not sent to you" in telegram.answers[1]["text"]

    assert press_telegram(client, 3, 1001, data).status_code == 409  # the same update again
    assert escalation(runtime).acknowledged_at is None

    clock.advance(hours=2)  # the button lived SLA_GUARD_ACK_TTL_S = 1 h
    assert press_telegram(client, 4, 1001, data).get_json()["press"] == "expired"
    assert escalation(runtime).acknowledged_at is None and telegram.edits == []


def test_a_second_press_tells_who_took_it_first(chats, client, runtime, clock, first_breach):
    telegram, _, _ = chats
    first_breach(client, runtime, clock, HOT)
    _, anna = telegram_button(telegram, "1001")
    olga_message, olga = telegram_button(telegram, "2001")
    assert press_telegram(client, 1, 2001, olga, chat_id=2001, message_id=olga_message).get_json()["press"] == "taken"
    assert press_telegram(client, 2, 1001, anna).get_json()["press"] == "already"
    assert escalation(runtime).acknowledged_by == "olga"
    assert telegram.edits[0]["text"].endswith("✅ Взял в работу olga в 12:16.")
    assert "already taken by olga at 12:16" in telegram.answers[1]["text"]


def test_the_telegram_endpoint_is_off_without_its_secret(client, app):
    from sla_guard.config import APP_CONFIG_KEY, of_app

    app.config[APP_CONFIG_KEY] = of_app(app).replace(telegram_webhook_secret=None)
    assert press_telegram(client, 1, 1001, "x").status_code == 404


def test_a_telegram_update_that_is_not_a_press_is_acknowledged_and_ignored(chats, client):
    response = client.post(
        "/chat/telegram/tg",
        json={"update_id": 9, "message": {"message_id": 1, "text": "/start"}},
        headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
    )
    assert response.status_code == 200 and response.get_json()["ignored"] is True
    bad = client.post("/chat/telegram/tg", data="[]", headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert bad.status_code == 400


# --- Slack ------------------------------------------------------------------------------------


def test_take_it_in_slack_stops_the_ladder_and_replaces_the_message(chats, client, runtime, clock, first_breach):
    _, slack, httpserver = chats
    clock_id = first_breach(client, runtime, clock, HOT)
    value = slack_button(slack, "U0ANNA")
    response = press_slack(client, httpserver, clock, "U0ANNA", value)
    assert response.status_code == 200
    row = escalation(runtime)
    assert (row.acknowledged_by, row.acknowledged_at) == ("anna", clock())
    [reply] = slack.responses
    assert reply["replace_original"] is True
    context = [e["text"] for b in reply["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert "✅ Taken by anna at 12:16." in context
    buttons = [e["action_id"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["sla_guard.open"]

    clock.advance(minutes=40)
    run_timer(runtime, clock_id)
    assert [r.level for r in rows(runtime, EscalationRow)] == [1]


def test_slack_refuses_forged_replayed_stale_and_strangers_presses(chats, client, runtime, clock, first_breach):
    _, slack, httpserver = chats
    first_breach(client, runtime, clock, HOT)
    value = slack_button(slack, "U0ANNA")
    assert press_slack(client, httpserver, clock, "U0ANNA", value, secret="not-the-signing-secret").status_code == 401
    stale = clock() - timedelta(minutes=6)
    assert press_slack(client, httpserver, clock, "U0ANNA", value, at=stale).status_code == 401
    assert press_slack(client, httpserver, clock, "U0IVAN", value).status_code == 200
    assert slack.responses[-1] == {
        "response_type": "ephemeral",
        "replace_original": False,
        "text": "This alert was not sent to you, so you cannot take the lead from here.",
    }
    assert press_slack(client, httpserver, clock, "U0ANNA", value + "x").status_code == 200
    assert slack.responses[-1]["text"] == "This button is not valid."
    assert escalation(runtime).acknowledged_at is None

    clock.advance(seconds=1)
    first = press_slack(client, httpserver, clock, "U0ANNA", value)
    assert first.status_code == 200 and escalation(runtime).acknowledged_by == "anna"
    interaction_replay = press_slack(client, httpserver, clock, "U0ANNA", value)
    assert interaction_replay.status_code == 409


def test_open_lead_clicks_need_no_answer(chats, client, clock):
    _, _, httpserver = chats
    interaction = {"type": "block_actions", "user": {"id": "U0ANNA"}, "actions": [{"action_id": "sla_guard.open"}]}
    body = urlencode({"payload": json.dumps(interaction)}).encode()
    timestamp = str(int(clock().timestamp()))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(SLACK_SECRET, timestamp, body),
    }
    response = client.post(
        "/chat/slack", data=body, headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200


def test_alert_rows_carry_their_buttons(chats, client, runtime, clock, first_breach):
    first_breach(client, runtime, clock, HOT)
    for alert in rows(runtime, AlertRow):
        payload = json.loads(alert.payload)
        assert verify_press(ACK_SECRET, payload["message"]["press"], clock())[0] == alert.id


def test_the_telegram_secret_must_be_one_telegram_accepts():
    from sla_guard.config import load_settings
    from sla_guard.exceptions import ConfigError

    with pytest.raises(ConfigError, match="SLA_GUARD_TELEGRAM_WEBHOOK_SECRET"):
        load_settings(env={}, overrides={"SLA_GUARD_TELEGRAM_WEBHOOK_SECRET": "has spaces and is long enough"})
    settings = load_settings(env={}, overrides={"SLA_GUARD_TELEGRAM_WEBHOOK_SECRET": TG_SECRET})
    assert settings.telegram_webhook_secret == TG_SECRET and settings.slack_signing_secret is None
