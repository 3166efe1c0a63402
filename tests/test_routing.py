"""Routing: roles at fire time, per-person language and addresses, quiet hours and the on-duty person.

The pure decisions are tested with explicit instants; the end-to-end cases run the real worker
against a fake Telegram Bot API with an injected clock.
"""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sla_guard.core.rules.loading import parse_rules
from sla_guard.core.rules.notify_spec import QuietHours
from sla_guard.exceptions import RulesError
from sla_guard.outbox.notify.routing import Delivery, address_for, quiet_until, route
from sla_guard.store.models import AlertRow, ClockRow
from sla_guard.timers.reconciler import reconcile
from tests.support.fakes import TELEGRAM_TOKEN, FakeTelegram
from tests.support.firing import run_timer

ROUTING_RULES = textwrap.dedent(f"""
    timezone: Europe/Moscow
    locale: en
    channels:
      tg: {{type: telegram, token: "{TELEGRAM_TOKEN}", api_url: "${{TG_URL:-http://127.0.0.1:9}}"}}
      ops-log: {{type: log}}
    people:
      anna:  {{manager: olga, team: inbound, channels: [tg], telegram: 1001,
              quiet_hours: {{from: "20:00", to: "09:00"}}}}
      boris: {{manager: petr, team: inbound, channels: [tg], telegram: 1002}}
      olga:  {{channels: [tg], telegram: 2001, locale: ru}}
      petr:  {{channels: [tg], telegram: 2002}}
      ivan:  {{channels: [tg], telegram: 3001}}
    teams:
      inbound: {{head: ivan, members: [anna, boris]}}
    ops: {{notify: [ops-log]}}
    rules:
      - name: hot
        match: {{priority: hot}}
        first_touch:
          within: 15m
          escalate:
            - {{after: 0m, notify: [owner, manager]}}
            - {{after: 30m, notify: [owner, manager]}}
""")

MSK = "Europe/Moscow"


def rules_with(extra: str = "", text: str = ROUTING_RULES):
    return parse_rules(text + textwrap.dedent(extra), env={})


# --- pure -----------------------------------------------------------------------------------


NIGHT = QuietHours.model_validate({"from": "20:00", "to": "09:00"})


@pytest.mark.parametrize(
    ("utc", "until"),
    [
        ("2026-11-23T16:59:00", None),  # 19:59 in Moscow: still day
        ("2026-11-23T17:00:00", "2026-11-24T06:00:00"),  # 20:00: night until 09:00 tomorrow
        ("2026-11-23T23:30:00", "2026-11-24T06:00:00"),  # 02:30 next day
        ("2026-11-24T05:59:59", "2026-11-24T06:00:00"),
        ("2026-11-24T06:00:00", None),  # 09:00 sharp: morning
    ],
)
def test_quiet_hours_across_midnight(utc, until):
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    expected = datetime.fromisoformat(until).replace(tzinfo=UTC) if until else None
    assert quiet_until(NIGHT, MSK, now) == expected


def test_quiet_hours_within_a_day_and_in_the_persons_zone():
    lunch = QuietHours.model_validate({"from": "13:00", "to": "14:00", "timezone": "Asia/Yekaterinburg"})
    assert quiet_until(lunch, MSK, datetime(2026, 11, 23, 8, 30, tzinfo=UTC)) == datetime(
        2026, 11, 23, 9, 0, tzinfo=UTC
    )
    assert quiet_until(lunch, MSK, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)) is None


def test_quiet_hours_keep_local_time_over_a_dst_change():
    night = QuietHours.model_validate({"from": "22:00", "to": "07:00", "timezone": "Europe/Berlin"})
    # the night of 28-29 March 2026: clocks go forward at 02:00, 07:00 local is 05:00 UTC
    assert quiet_until(night, MSK, datetime(2026, 3, 28, 22, 0, tzinfo=UTC)) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


FIELDS = {"owner": "anna", "team": "inbound"}


def test_route_holds_a_sleeping_persons_alert_until_morning_and_keeps_locales():
    rules = rules_with()
    night = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert route(("owner", "manager", "ops-log"), FIELDS, rules, night) == [
        Delivery("tg", "anna", "owner", "en", not_before=datetime(2026, 11, 24, 6, 0, tzinfo=UTC)),
        Delivery("tg", "olga", "manager", "ru"),
        Delivery("ops-log", None, None, "en"),
    ]
    day = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)
    assert [d.not_before for d in route(("owner",), FIELDS, rules, day)] == [None]


def test_route_sends_to_the_on_duty_person_instead_when_one_is_set():
    rules = rules_with("on_duty: ivan\n")
    night = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert route(("owner", "manager"), FIELDS, rules, night) == [
        Delivery("tg", "ivan", "owner", "en", instead_of="anna"),
        Delivery("tg", "olga", "manager", "ru"),
    ]


def test_an_on_duty_person_in_their_own_quiet_hours_lets_the_alert_wait():
    rules = rules_with(
        "on_duty: ivan\n",
        ROUTING_RULES.replace(
            "ivan:  {channels: [tg], telegram: 3001}",
            'ivan:  {channels: [tg], telegram: 3001, quiet_hours: {from: "19:00", to: "08:00"}}',
        ),
    )
    [delivery] = route(("owner",), FIELDS, rules, datetime(2026, 11, 23, 18, 0, tzinfo=UTC))
    assert (delivery.recipient, delivery.not_before) == ("anna", datetime(2026, 11, 24, 6, 0, tzinfo=UTC))


def test_addresses_come_from_the_person_unless_the_channel_names_a_chat():
    rules = rules_with()
    assert address_for(rules, "tg", "olga") == 2001
    assert address_for(rules, "ops-log", "olga") is None
    fixed = parse_rules(
        ROUTING_RULES.replace(
            'api_url: "${TG_URL:-http://127.0.0.1:9}"', 'chat: "-100123", api_url: "${TG_URL:-http://127.0.0.1:9}"'
        ),
        env={},
    )
    assert address_for(fixed, "tg", "olga") is None


def test_the_rules_file_checks_addresses_locales_quiet_hours_on_duty_and_ops():
    bad = ROUTING_RULES.replace("telegram: 1002", "locale: de").replace('"20:00"', '"25:00"')
    bad += "on_duty: nobody\nops: {notify: [pager]}\ndigests: {daily_at: '9am', weekly_on: funday}\n"
    with pytest.raises(RulesError) as info:
        parse_rules(bad, env={})
    errors = dict(info.value.errors)
    assert errors["people.boris.locale"].startswith("Input should be 'en' or 'ru'")
    assert "not a time of day" in errors["people.anna.quiet_hours.from"]
    assert "not a time of day" in errors["digests.daily_at"]
    assert "digests.weekly_on" in errors


def test_cross_checks_of_the_notification_keys():
    bad = ROUTING_RULES.replace(", telegram: 1002", "") + "on_duty: nobody\nops: {notify: [pager]}\n"
    with pytest.raises(RulesError) as info:
        parse_rules(bad, env={})
    assert dict(info.value.errors) == {
        "people.boris.channels[0]": 'channel "tg" names no destination: give boris a `telegram` address',
        "on_duty": '"nobody" is not in people',
        "ops.notify[0]": '"pager" is not a channel',
    }


def test_channel_keys_are_checked_per_type():
    with pytest.raises(RulesError) as info:
        parse_rules(
            textwrap.dedent("""
            channels:
              a: {type: telegram}
              b: {type: slack, url: "https://hooks.example/x", token: "xoxb-1"}
              c: {type: email, host: smtp.example, from: "sla@example.com", security: tls}
              d: {type: teams, url: "not a url"}
              e: {type: telegram, token: "1:x", colour: blue}
            rules: [{name: a, first_touch: {within: 1h}}]
        """),
            env={},
        )
    errors = dict(info.value.errors)
    assert errors["channels.a.token"] == "a telegram channel needs a token"
    assert errors["channels.b"].startswith("give either `url`")
    assert errors["channels.c.security"].startswith("Input should be")
    assert errors["channels.d.url"] == "'not a url' is not an http(s) URL"
    assert errors["channels.e.colour"] == "unknown key for a channel of type telegram"


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
def rules_text():
    return ROUTING_RULES


@pytest.fixture
def clock(make_clock):

    return make_clock(datetime(2026, 11, 23, 16, 50, tzinfo=UTC))  # 19:50 in Moscow


@pytest.fixture
def telegram(httpserver, monkeypatch):
    monkeypatch.setenv("TG_URL", httpserver.url_for("/").rstrip("/"))
    return FakeTelegram(chats={"1001", "1002", "2001", "2002", "3001"}).install(httpserver)


HOT = {
    "priority": "hot",
    "owner": "anna",
    "team": "inbound",
    "name": "ACME",
    "source": "website",
    "url": "https://crm.example/leads/1001",
}


def alerts(runtime) -> list[AlertRow]:
    with runtime.db.session() as session:
        return list(session.execute(select(AlertRow).order_by(AlertRow.id)).scalars())


def clock_id(runtime) -> int:
    with runtime.db.session() as session:
        return session.execute(select(ClockRow.id)).scalar_one()


def test_a_lead_reassigned_mid_ladder_alerts_the_new_owner_and_their_manager(
    telegram, app, client, runtime, clock, event, post_signed, run_worker
):
    clock.current = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # daytime: no quiet hours in the way
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id(runtime))
    assert sorted(m["chat_id"] for m in telegram.messages) == ["1001", "2001"]  # anna and her manager olga
    clock.advance(minutes=5)
    post_signed(client, event("e2", "lead.assigned", clock(), lead={"owner": "boris"}, previous_owner="anna"), clock())
    run_worker(runtime)
    clock.advance(minutes=25)
    run_timer(runtime, clock_id(runtime))
    later = telegram.messages[2:]
    assert sorted(m["chat_id"] for m in later) == ["1002", "2002"]  # boris and his manager petr
    assert all("Owner: boris" in m["text"] for m in later)
    assert {(a.recipient, a.role, a.status) for a in alerts(runtime)} == {
        ("anna", "owner", "delivered"),
        ("olga", "manager", "delivered"),
        ("boris", "owner", "delivered"),
        ("petr", "manager", "delivered"),
    }


def test_manager_gets_the_alert_in_their_language(
    telegram, app, client, runtime, clock, event, post_signed, run_worker
):
    clock.current = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock.advance(minutes=16)
    run_timer(runtime, clock_id(runtime))
    texts = {m["chat_id"]: m["text"] for m in telegram.messages}
    assert texts["2001"].startswith(
        "<b>Лид ACME #L-1001 остался без первого касания в срок</b>\nСрок истёк в 12:15, 1 мин назад"
    )
    assert texts["1001"].startswith(
        "<b>Lead ACME #L-1001 missed its first touch</b>\nThe deadline passed at 12:15, 1 min ago"
    )


def test_an_alert_at_night_waits_for_the_morning_then_goes_out_once(
    telegram, app, client, runtime, clock, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock.advance(minutes=15)  # 20:05 in Moscow: anna's night has begun
    run_timer(runtime, clock_id(runtime))
    assert [m["chat_id"] for m in telegram.messages] == ["2001"]  # olga has no quiet hours
    held = next(a for a in alerts(runtime) if a.recipient == "anna")
    morning = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 09:00 in Moscow
    assert (held.status, held.attempts, held.claimed_until) == ("pending", 0, morning)
    assert json.loads(held.payload)["fired_at"] == "2026-11-23T17:05:00Z"

    clock.current = morning - timedelta(minutes=1)  # the ladder's second level fired meanwhile
    reconcile(runtime)
    run_worker(runtime)
    assert [m["chat_id"] for m in telegram.messages] == ["2001", "2001"]  # anna: still nothing
    assert {(a.recipient, a.status) for a in alerts(runtime)} == {("anna", "pending"), ("olga", "delivered")}
    clock.current = morning + timedelta(seconds=1)
    assert reconcile(runtime).alerts_retried == 2
    run_worker(runtime)
    to_anna = [m["text"] for m in telegram.messages if m["chat_id"] == "1001"]
    assert len(to_anna) == 2 and "Escalation, level 2: lead ACME #L-1001" in to_anna[1]
    reconcile(runtime)
    run_worker(runtime)
    assert len(telegram.messages) == 4
    assert {a.status for a in alerts(runtime)} == {"delivered"}
