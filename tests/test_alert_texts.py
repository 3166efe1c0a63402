"""What a manager reads: a text of its own for every kind, in both languages, on every channel;
durations as people say them; times in the reader's zone; and nothing from a lead escaping
its medium (Slack mrkdwn, Telegram HTML, Teams cards, e-mail headers and HTML)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
import requests

from sla_guard.core.rules.durations import parse_duration
from sla_guard.core.rules.notify_spec import EmailChannel
from sla_guard.core.rules.schema import Channel
from sla_guard.outbox.delivery import send
from sla_guard.outbox.notify.digest_texts import Overdue, Period, Summary, daily_text, weekly_text
from sla_guard.outbox.notify.formats import teams_card
from sla_guard.outbox.notify.messages import LOCALES, alert_payload, message_of, texts
from sla_guard.outbox.notify.slack import message_body as slack_body
from sla_guard.outbox.notify.smtp import build_message
from sla_guard.outbox.notify.spoken import local_time, sla_length, spoken_duration
from sla_guard.outbox.notify.teams import card_message
from sla_guard.outbox.notify.telegram import message_body as telegram_body
from sla_guard.outbox.ops_alerts import delivery_failed, work_failed
from sla_guard.store.models import AlertRow, FollowUpTaskRow
from tests.support.fakes import SmtpSink

AT = datetime(2026, 11, 23, 9, 15, 0, tzinfo=UTC)
LEAD = {
    "lead_id": "L-1001",
    "name": "ACME",
    "source": "website",
    "owner": "anna",
    "stage": "proposal",
    "url": "https://crm.example/leads/1001",
}

ALERT_KINDS = [
    # (kind, level, reassigned to, clock) -> the text it must read
    ("first_touch.warning", 0, None, "first_touch"),
    ("first_touch.breach", 1, None, "first_touch"),
    ("first_touch.breach", 2, None, "first_touch"),
    ("first_touch.breach", 2, "boris", "first_touch"),
    ("stage.warning", 0, None, "stage:proposal"),
    ("stage.breach", 1, None, "stage:proposal"),
    ("stage.breach", 2, None, "stage:proposal"),
    ("stage.breach", 2, "boris", "stage:proposal"),
    ("follow_up.task", 0, None, "follow_up:proposal:0"),
    ("follow_up.missed", 1, None, "follow_up:proposal:0"),
    ("follow_up.missed", 2, None, "follow_up:proposal:0"),
    ("follow_up.missed", 2, "boris", "follow_up:proposal:0"),
]
CHANNELS = ("webhook", "log", "crm", "telegram", "slack", "teams", "email")


def an_alert(kind, level, new_owner, clock, locale, lead=LEAD, **extra) -> dict:
    deadline = AT + timedelta(minutes=3) if level == 0 and kind != "follow_up.task" else AT - timedelta(hours=level - 1)
    if kind == "follow_up.task":
        deadline = AT + timedelta(days=1)
    values = {
        "alert_id": 7,
        "escalation_id": 3,
        "kind": kind,
        "level": level,
        "lead": lead,
        "rule": "hot website leads",
        "clock": clock,
        "due_at": AT,
        "fired_at": AT,
        "recipient": "olga",
        "role": "manager",
        "channel": "x",
        "locale": locale,
        "ack_url": "https://sla.example/ack/3.1795.b2xnYQ.sig",
        "press": "p1.7.1795.c2lnbmF0dXJl",
        "deadline_at": deadline,
        "sla": parse_duration("2d" if clock.startswith("stage") else "15m"),
        "business": clock.startswith("stage"),
        "zone": "Europe/Moscow",
        "team_zone": "Europe/Moscow",
        "new_owner": new_owner,
        "task": "Call back about the proposal" if clock.startswith("follow_up") else None,
    }
    return alert_payload(**{**values, **extra})


def digest_payloads(locale: str) -> list[dict]:
    overdue = [Overdue(LEAD, "stage:proposal", "hot website leads", AT - timedelta(hours=1, minutes=20))]
    daily = daily_text(overdue, locale, "2026-11-23", AT)
    summary = Summary(total=4, met=3, compliance=0.75, first_touch_p50_s=600.0, escalations=1, overdue_now=1)
    summary.by_owner = {"anna": [3, 4]}
    period = Period("weekly", "2026-11-23", AT, AT - timedelta(days=7))
    weekly = weekly_text(summary, locale, period, "Europe/Moscow", team_scope=True)
    return [
        {"kind": "digest.daily", "alert_id": None, "digest_id": 1, "lead_id": None, "text": daily},
        {"kind": "digest.weekly", "alert_id": None, "digest_id": 2, "lead_id": None, "text": weekly},
    ]


def ops(locale: str) -> dict:
    """The ops alert about an alert that could not be delivered, as the outbox writes it."""
    failed = AlertRow(id=9, escalation_id=3, lead_id="L-1001", channel="tg", recipient="anna", attempts=8)
    return {**delivery_failed(failed, "telegram: HTTP 403", locale), "channel": "ops", "fired_at": ""}


def given_up(locale: str) -> dict:
    """The ops alert about other given-up outgoing work, as the outbox writes it."""
    task = FollowUpTaskRow(id=4, lead_id="L-1001", attempts=8)
    return {**work_failed("CRM task", "task", task, "amoCRM: HTTP 403", locale), "channel": "ops", "fired_at": ""}


def every_payload(locale: str) -> list[dict]:
    alerts = [an_alert(*kind, locale) for kind in ALERT_KINDS]
    return alerts + digest_payloads(locale) + [ops(locale), given_up(locale)]


def rendered(payload: dict, channel: str) -> str:
    """Everything a reader of ``channel`` sees of the payload, as one string."""
    if channel in ("webhook", "log", "crm"):
        return payload["text"] + "\n" + (payload.get("subject") or "")
    if channel == "telegram":
        body = telegram_body("1001", payload)
        return body["text"] + json.dumps(body.get("reply_markup"), ensure_ascii=False)
    if channel == "slack":
        return json.dumps(slack_body(payload, "U0ANNA"), ensure_ascii=False)
    if channel == "teams":
        return json.dumps(card_message(payload), ensure_ascii=False)
    mail = EmailChannel.model_validate({"type": "email", "host": "localhost", "from": "sla@example.com"})
    message = build_message(mail, payload, ["olga@example.com"])
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    return "\n".join(
        [str(parsed["Subject"]), *(part.get_content() for part in parsed.walk() if not part.is_multipart())]
    )


PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
RAW_SECONDS = re.compile(r"\b\d+[smhd]\b|\d+m\d+s")
EMPTY_FIELD = re.compile(r"\(—\)|: —|—[.;,)]|— —")
CYRILLIC = re.compile(r"[а-яА-ЯёЁ]")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", CHANNELS)
def test_every_kind_reads_in_its_own_words_on_every_channel(locale, channel):
    seen_titles = set()
    for payload in every_payload(locale):
        text = rendered(payload, channel)
        assert not PLACEHOLDER.search(text), (payload["kind"], text)
        assert not RAW_SECONDS.search(text.replace("sla.example/ack/3.1795", "")), (payload["kind"], text)
        assert not EMPTY_FIELD.search(text), (payload["kind"], text)  # no missing value shown as a dash
        title = message_of(payload)["title"]
        assert title not in seen_titles, f"{payload['kind']} falls back to another kind's text"
        seen_titles.add(title)
        if payload.get("lead_name"):
            assert "ACME #L-1001" in text
        first_line = message_of(payload)["title"]
        if locale == "ru":
            assert CYRILLIC.search(first_line), (payload["kind"], first_line)
        else:
            assert not CYRILLIC.search(text), (payload["kind"], text)


def test_every_alert_kind_has_both_languages_and_the_same_placeholders():
    en, ru = texts("en"), texts("ru")
    assert set(en["alert"]) == set(ru["alert"])
    for name, template in en["alert"].items():
        for part, text in template.items():
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(ru["alert"][name][part])), (name, part)
    assert set(en["digest"]) == set(ru["digest"]) and set(en["chat"]) == set(ru["chat"])


def test_a_follow_up_miss_is_not_announced_as_a_missed_first_touch():
    text = an_alert("follow_up.missed", 1, None, "follow_up:proposal:0", "ru")["text"]
    assert text.startswith("Задача по лиду ACME #L-1001 не выполнена в срок: Call back about the proposal.")
    assert "первое касание" not in text


def test_the_first_breach_says_when_the_deadline_passed_and_how_long_the_sla_was():
    en = an_alert("first_touch.breach", 1, None, "first_touch", "en")
    assert en["text"].splitlines()[:2] == [
        "Lead ACME #L-1001 missed its first touch.",
        "The deadline passed at 12:15; the SLA was 15 min.",
    ]
    ru = an_alert("first_touch.breach", 1, None, "first_touch", "ru")
    assert ru["text"].splitlines()[1] == "Срок истёк в 12:15; SLA — 15 мин."
    later = an_alert("first_touch.breach", 1, None, "first_touch", "en", deadline_at=AT - timedelta(minutes=80))
    assert later["text"].splitlines()[1] == "The deadline passed at 10:55, 1 h 20 min ago; the SLA was 15 min."


def test_a_lead_without_a_source_shows_no_empty_brackets():
    lead = {**LEAD, "source": None}
    text = an_alert("first_touch.breach", 1, None, "first_touch", "en", lead=lead)["text"]
    assert "()" not in text and "(—)" not in text and "Source" not in text


@pytest.mark.parametrize(
    ("seconds", "en", "ru"),
    [
        (0, "0 sec", "0 сек"),
        (45, "45 sec", "45 сек"),
        (90, "1 min 30 sec", "1 мин 30 сек"),
        (300, "5 min", "5 мин"),
        (4800, "1 h 20 min", "1 ч 20 мин"),
        (86400 + 3 * 3600, "1 day 3 h", "1 день 3 ч"),
        (5 * 86400, "5 days", "5 дней"),
        (22 * 86400, "22 days", "22 дня"),
    ],
)
def test_durations_as_people_say_them(seconds, en, ru):
    assert spoken_duration(seconds, "en") == en and spoken_duration(seconds, "ru") == ru


def test_sla_days_under_a_business_calendar_are_working_days():
    assert sla_length(parse_duration("2d"), "ru", business_calendar=True) == "2 рабочих дня"
    assert sla_length(parse_duration("1d"), "ru", business_calendar=True) == "1 рабочий день"
    assert sla_length(parse_duration("5d"), "ru", business_calendar=True) == "5 рабочих дней"
    assert sla_length(parse_duration("2d"), "en", business_calendar=True) == "2 working days"
    assert sla_length(parse_duration("1d4h"), "en", business_calendar=True) == "1 working day 4 h"
    assert sla_length(parse_duration("2d"), "en", business_calendar=False) == "2 days"
    assert sla_length(parse_duration("15m"), "ru", business_calendar=True) == "15 мин"


def test_times_are_in_the_readers_zone_named_when_not_the_teams():
    assert local_time(AT, "en", "Europe/Moscow", "Europe/Moscow", today=AT) == "12:15"
    assert local_time(AT, "en", "Asia/Yekaterinburg", "Europe/Moscow", today=AT) == "14:15 (Asia/Yekaterinburg)"
    assert local_time(AT, "ru", "Europe/Moscow", "Europe/Moscow", today=AT + timedelta(days=1)) == "23 ноя 12:15"
    alert = an_alert("first_touch.breach", 1, None, "first_touch", "en", zone="Asia/Yekaterinburg")
    assert "The deadline passed at 14:15 (Asia/Yekaterinburg)" in alert["text"]


def test_a_person_timezone_is_checked_in_the_rules_file():
    from sla_guard.core.rules.schema import Person

    assert Person.model_validate({"timezone": "Asia/Yekaterinburg"}).timezone == "Asia/Yekaterinburg"
    with pytest.raises(ValueError, match="IANA time zone"):
        Person.model_validate({"timezone": "Mars/Olympus"})


# --- escaping per channel ---------------------------------------------------------------------

HOSTILE = (
    "<!channel> <https://evil.example|Click here> & <b>bold</b> <a href='x'>x</a> "
    "{{DATE(2017-02-14T06:00:00Z, SHORT)}}\r\nBcc: victim@example.com"
)


def hostile(locale="en", **extra) -> dict:
    lead = {**LEAD, "name": HOSTILE, "owner": "<@U0BOSS>", "url": "javascript:alert(1)"}
    return an_alert("first_touch.breach", 2, None, "first_touch", locale, lead=lead, **extra)


def test_slack_shows_mentions_and_links_from_a_lead_as_text():
    body = slack_body(hostile(), "U0ANNA")
    mrkdwn = [body["text"]] + [b["text"]["text"] for b in body["blocks"] if b["type"] == "section"]
    for text in mrkdwn:
        assert "<!channel>" not in text and "<https://evil" not in text and "<@U0BOSS>" not in text
        assert "&lt;!channel&gt; &lt;https://evil.example|Click here&gt; &amp; " in text
        assert text.startswith("<@U0ANNA> ")  # the one mention sla-guard means
        assert re.sub(r"&(amp|lt|gt);", "", text.replace("<@U0ANNA>", "")).count("<") == 0
    plain = [e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert all(
        element["type"] == "plain_text" for b in body["blocks"] if b["type"] == "context" for element in b["elements"]
    )
    assert any("<@U0BOSS>" in text for text in plain)  # plain_text is never parsed: shown as written
    buttons = [e for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [button["action_id"] for button in buttons] == ["sla_guard.take"]  # javascript: never becomes a link


def test_telegram_html_escapes_the_lead():
    text = telegram_body("1001", hostile())["text"]
    assert "<b>bold</b>" not in text and "<a href" not in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "&amp;" in text
    tags = re.findall(r"</?([a-z]+)", text)
    assert set(tags) <= {"b", "i"}
    keyboard = telegram_body("1001", hostile())["reply_markup"]["inline_keyboard"][0]
    assert [button.get("callback_data") for button in keyboard] == ["p1.7.1795.c2lnbmF0dXJl"]


def test_teams_card_has_no_markdown_or_date_functions_from_the_lead():
    card = teams_card(message_of(hostile()))
    blocks = card["body"]
    assert {block["type"] for block in blocks} == {"RichTextBlock"}  # TextRuns: Markdown is never read
    runs = " ".join(run["text"] for block in blocks for run in block["inlines"])
    assert "{{" not in runs and "<b>bold</b>" in runs
    assert [action["title"] for action in card["actions"]] == ["Take it"]


def test_email_headers_stay_one_line_and_the_html_part_is_escaped():
    mail = EmailChannel.model_validate({"type": "email", "host": "localhost", "from": "sla@example.com"})
    message = message_from_bytes(build_message(mail, hostile(), ["olga@example.com"]).as_bytes(), policy=policy.default)
    assert message["Bcc"] is None and "\n" not in message["Subject"] and "\r" not in message["Subject"]
    html_part = message.get_body(("html",)).get_content()
    assert "<b>bold</b>" not in html_part and "&lt;b&gt;bold&lt;/b&gt;" in html_part
    assert "javascript:" not in html_part


@pytest.mark.parametrize("locale", LOCALES)
def test_an_alert_for_a_lead_with_cr_lf_in_its_name_is_delivered(locale):
    """Issue 9, fault 5: such an alert used to fail with ValueError and be retried forever."""
    with SmtpSink(None, None, "plain") as sink, requests.Session() as http:
        spec = Channel.model_validate(
            {"type": "email", "host": "127.0.0.1", "port": sink.port, "security": "none", "from": "sla@example.com"}
        )
        send("mail", spec, hostile(locale), http, address="olga@example.com")
    [received] = sink.messages
    assert received["to"] == ["olga@example.com"]
    assert "victim@example.com" not in received["to"] and received["message"]["Bcc"] is None


def test_quiet_hours_follow_the_persons_own_zone():
    from sla_guard.core.rules.loading import parse_rules
    from sla_guard.outbox.notify.routing import person_quiet_until

    rules = parse_rules(
        "timezone: Europe/Moscow\n"
        "people:\n"
        "  anna: {timezone: Asia/Yekaterinburg, quiet_hours: {from: '20:00', to: '09:00'}}\n"
        "rules: [{name: all, first_touch: {within: 15m}}]\n",
        env={},
    )
    # 16:30 UTC is 19:30 in Moscow but 21:30 in Yekaterinburg: anna's night, until 09:00 her time
    assert person_quiet_until(rules, "anna", datetime(2026, 11, 23, 16, 30, tzinfo=UTC)) == datetime(
        2026, 11, 24, 4, 0, tzinfo=UTC
    )
