"""Delivery guarantees across channels: one alert row per (lead, clock, level, recipient) and one
message for it under concurrent attempts and retries; backoff on transient failures, a stop and an
ops alert on permanent ones; a failing channel never holds up the others; no secret in any record."""

from __future__ import annotations

import json
import logging
import textwrap
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from sla_guard.outbox.delivery import ALERTS
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, OutboxItemRow
from sla_guard.timers.reconciler import reconcile
from tests.support.fakes import TELEGRAM_TOKEN, FakeTelegram, telegram_429
from tests.support.firing import run_timer

RULES = textwrap.dedent(f"""
    timezone: UTC
    channels:
      tg: {{type: telegram, token: "{TELEGRAM_TOKEN}", api_url: "${{TG_URL:-http://127.0.0.1:9}}", timeout_s: 1}}
      hook: {{type: webhook, url: "${{SINK_URL:-http://127.0.0.1:9/none}}"}}
      ops-hook: {{type: webhook, url: "${{OPS_URL:-http://127.0.0.1:9/none}}"}}
    people:
      anna:  {{manager: olga, team: inbound, channels: [tg, hook], telegram: 1001}}
      olga:  {{channels: [tg], telegram: 2001}}
      ivan:  {{channels: [tg], telegram: 3001}}
    teams:
      inbound: {{head: ivan, members: [anna]}}
    ops: {{notify: [ops-hook]}}
    rules:
      - name: hot
        first_touch:
          within: 15m
          escalate:
            - {{after: 0m, notify: [owner, manager, head]}}
""")
LEAD = {"owner": "anna", "team": "inbound", "name": "ACME", "source": "website"}


@pytest.fixture
def rules_text():
    return RULES


@pytest.fixture
def services(httpserver, monkeypatch):
    """Telegram, the webhook sink and the ops webhook, all on the local test server."""
    base = httpserver.url_for("/").rstrip("/")
    monkeypatch.setenv("TG_URL", base)
    monkeypatch.setenv("SINK_URL", base + "/hook")
    monkeypatch.setenv("OPS_URL", base + "/ops")
    telegram = FakeTelegram(chats={"1001", "2001", "3001"}).install(httpserver)
    return telegram, httpserver


def hooked(httpserver, path) -> list[dict]:
    return [json.loads(request.data) for request, _ in httpserver.log if request.path == path]


def alerts(runtime) -> list[AlertRow]:
    with runtime.db.session() as session:
        return list(session.execute(select(AlertRow).order_by(AlertRow.id)).scalars())


def ops_items(runtime) -> list[OutboxItemRow]:
    """The ops alerts: outbox items of kind ``ops``, as for every kind's permanent failure."""
    with runtime.db.session() as session:
        return list(session.execute(select(OutboxItemRow).order_by(OutboxItemRow.id)).scalars())


@pytest.fixture
def untouched_lead(event, post_signed, run_worker):
    def untouched_lead(client, runtime, clock) -> int:
        post_signed(client, event("e1", "lead.created", clock(), lead=LEAD), clock())
        run_worker(runtime)
        with runtime.db.session() as session:
            return session.execute(select(ClockRow.id)).scalar_one()

    return untouched_lead


def test_concurrent_timers_and_deliveries_make_one_alert_and_one_message_each(
    services, app, client, runtime, clock, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda request: (time.sleep(0.2), __import__("werkzeug").Response("ok"))[1]
    )
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    errors = []

    def fire():
        try:
            run_timer(runtime, clock_id)
        except Exception as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [a.id for a in alerts(runtime)]
    racers = [threading.Thread(target=ALERTS.run, args=(runtime, alert_id)) for alert_id in ids for _ in range(4)]
    for thread in racers:
        thread.start()
    for thread in racers:
        thread.join()
    assert errors == []
    with runtime.db.session() as session:
        assert session.execute(select(EscalationRow.level)).scalars().all() == [1]
    assert sorted((a.channel, a.recipient) for a in alerts(runtime)) == [
        ("hook", "anna"),
        ("tg", "anna"),
        ("tg", "ivan"),
        ("tg", "olga"),
    ]
    assert sorted(m["chat_id"] for m in telegram.messages) == ["1001", "2001", "3001"]
    assert len(hooked(httpserver, "/hook")) == 1
    assert {(a.status, a.attempts) for a in alerts(runtime)} == {("delivered", 1)}


def test_a_telegram_429_is_retried_after_its_wait_and_sent_once(
    services, app, client, runtime, clock, run_worker, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    telegram.failures.append(telegram_429(20))
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    failed = [a for a in alerts(runtime) if a.status == "pending"]
    assert len(failed) == 1 and failed[0].last_error == "telegram: HTTP 429 Too Many Requests: retry after 20"
    assert failed[0].claimed_until == clock() + timedelta(seconds=20)
    clock.advance(seconds=19)
    reconcile(runtime)
    run_worker(runtime)
    assert len(telegram.messages) == 2
    clock.advance(seconds=2)
    reconcile(runtime)
    run_worker(runtime)
    reconcile(runtime)
    run_worker(runtime)
    assert len(telegram.messages) == 3
    retried = next(a for a in alerts(runtime) if a.id == failed[0].id)
    assert (retried.status, retried.attempts, retried.last_error) == ("delivered", 2, None)


def test_backoff_grows_then_the_alert_fails_and_ops_hear_of_it_once(
    services, app, client, runtime, clock, run_worker, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/ops").respond_with_data("ok")
    runtime.settings = runtime.settings.replace(alert_max_attempts=3)
    telegram.broken["3001"] = (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"})
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    waits = []
    for _ in range(4):
        pending = [a for a in alerts(runtime) if a.status == "pending"]
        waits.extend((a.claimed_until - clock()).total_seconds() for a in pending)
        clock.advance(seconds=60)
        reconcile(runtime)
        run_worker(runtime)
    rows = alerts(runtime)
    failed = [a for a in rows if a.status == "failed"]
    assert waits == [2.0, 4.0]  # exponential backoff between attempts
    assert len(failed) == 1 and (failed[0].recipient, failed[0].attempts) == ("ivan", 3)
    assert failed[0].last_error == "telegram: HTTP 500 Internal Server Error"
    assert sum(a.status == "delivered" for a in rows) == 3 and len(rows) == 4  # ops alerts are no alert rows
    [ops] = hooked(httpserver, "/ops")
    assert ops["kind"] == "ops.delivery_failed" and ops["failed_alert_id"] == failed[0].id
    assert (ops["failed_kind"], ops["failed_id"]) == ("alert", failed[0].id)
    assert "HTTP 500" in ops["text"] and "3 attempt" in ops["text"] and TELEGRAM_TOKEN not in json.dumps(ops)
    assert [(item.kind, item.item_key, item.status) for item in ops_items(runtime)] == [
        ("ops", f"alert:{failed[0].id}:ops-hook", "done")
    ]
    reconcile(runtime)
    run_worker(runtime)
    assert len(hooked(httpserver, "/ops")) == 1


def test_a_bad_token_fails_at_once_with_an_ops_alert_and_no_secret_anywhere(
    services, app, client, runtime, clock, rules_path, caplog, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/ops").respond_with_data("ok")
    telegram.token = "another-token"
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    with caplog.at_level(logging.DEBUG, logger="sla_guard"):
        run_timer(runtime, clock_id)
    tg_alerts = [a for a in alerts(runtime) if a.channel == "tg"]
    assert {(a.status, a.attempts) for a in tg_alerts} == {("failed", 1)}
    assert {a.last_error for a in tg_alerts} == {"telegram: HTTP 401 Unauthorized (check the bot token)"}
    assert len(hooked(httpserver, "/ops")) == 3 and len(hooked(httpserver, "/hook")) == 1
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("sla_guard"))
    stored = json.dumps([(a.payload, a.last_error) for a in alerts(runtime)])
    for text in (logged, stored, json.dumps(hooked(httpserver, "/ops"))):
        assert TELEGRAM_TOKEN not in text and "AAH-test-bot" not in text


def test_a_failing_ops_alert_raises_no_other(services, app, client, runtime, clock, run_worker, untouched_lead):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/ops").respond_with_data("gone", status=410)
    telegram.token = "another-token"
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    failed = [a for a in alerts(runtime) if a.channel == "tg"]
    assert {(a.status, a.role) for a in failed} == {("failed", "owner"), ("failed", "manager"), ("failed", "head")}
    ops = ops_items(runtime)
    assert sorted(item.item_key for item in ops) == sorted(f"alert:{a.id}:ops-hook" for a in failed)
    assert {(item.kind, item.status, item.attempts, item.last_error) for item in ops} == {
        ("ops", "failed", 1, "HTTP 410")
    }
    clock.advance(minutes=5)
    reconcile(runtime)
    run_worker(runtime)
    assert len(ops_items(runtime)) == 3 and len(hooked(httpserver, "/ops")) == 3
    assert len(alerts(runtime)) == 4  # the failing ops alerts raised no alert either


def test_an_ops_alert_an_older_version_kept_as_an_alert_raises_no_other(
    services, app, client, runtime, clock, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    httpserver.expect_request("/ops").respond_with_data("gone", status=410)
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    [first, *_] = alerts(runtime)
    with runtime.db.session() as session:  # as versions before ops alerts were outbox items stored them
        legacy = AlertRow(
            escalation_id=first.escalation_id,
            lead_id=first.lead_id,
            channel="ops-hook",
            recipient=f"ops:{first.id}",
            role="ops",
            payload=json.dumps({"kind": "ops.delivery_failed", "text": "alert #1 failed", "alert_id": None}),
            status="pending",
            attempts=0,
            created_at=clock(),
        )
        session.add(legacy)
        session.flush()
        legacy_id = legacy.id
    assert ALERTS.run(runtime, legacy_id) == "failed"
    assert [a.status for a in alerts(runtime) if a.id == legacy_id] == ["failed"]
    assert ops_items(runtime) == [] and len(hooked(httpserver, "/ops")) == 1


def test_one_channel_crashing_never_holds_up_the_others(
    services, app, client, runtime, clock, monkeypatch, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    from sla_guard.outbox.delivery import SENDERS

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(SENDERS, "telegram", explode)
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    by_channel = {(a.channel, a.recipient): a for a in alerts(runtime)}
    assert by_channel[("hook", "anna")].status == "delivered"
    assert {by_channel[("tg", who)].last_error for who in ("anna", "olga", "ivan")} == {"unexpected RuntimeError"}
    assert {by_channel[("tg", who)].status for who in ("anna", "olga", "ivan")} == {"pending"}


def test_a_delivery_that_crashes_outright_does_not_stop_the_timer(
    services, app, client, runtime, clock, monkeypatch, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")

    real = ALERTS.run
    calls = []

    def flaky(rt, alert_id):
        calls.append(alert_id)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return real(rt, alert_id)

    monkeypatch.setattr(ALERTS, "run", flaky)
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    result = run_timer(runtime, clock_id)
    assert len(calls) == len(result.alert_ids) == 4
    assert sum(a.status == "delivered" for a in alerts(runtime)) == 3


def test_an_alert_whose_worker_died_mid_send_is_taken_over_once_its_claim_expires(
    services, app, client, runtime, clock, run_worker, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    from sla_guard.timers.firing import fire_clocks

    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    result = fire_clocks(runtime, [clock_id])[clock_id]  # recorded, but the worker dies before sending
    first = result.alert_ids[0]
    assert ALERTS.claim(runtime, first) is not None  # ... or while sending this one
    clock.advance(seconds=6)  # the reconciler leaves alerts younger than 5 s to their own job
    reconcile(runtime)
    run_worker(runtime)
    assert {a.id: a.status for a in alerts(runtime)}[first] == "sending"
    assert len(telegram.messages) + len(hooked(httpserver, "/hook")) == 3  # the others went out
    clock.advance(seconds=ALERTS.claim_s)
    reconcile(runtime)
    run_worker(runtime)
    reconcile(runtime)
    run_worker(runtime)
    assert {a.status for a in alerts(runtime)} == {"delivered"}
    assert len(telegram.messages) + len(hooked(httpserver, "/hook")) == 4
    assert {a.id: a.attempts for a in alerts(runtime)}[first] == 2


def test_slow_channels_hand_the_remaining_alerts_to_jobs_of_their_own(
    services, app, client, runtime, clock, monkeypatch, run_worker, untouched_lead
):
    telegram, httpserver = services
    httpserver.expect_request("/hook").respond_with_data("ok")
    from sla_guard.outbox import base

    monkeypatch.setattr(base, "INLINE_S", -1.0)  # as if the first sends took too long
    clock_id = untouched_lead(client, runtime, clock)
    clock.advance(minutes=15)
    run_timer(runtime, clock_id)
    assert {a.status for a in alerts(runtime)} == {"pending"}
    run_worker(runtime)
    assert {(a.status, a.attempts) for a in alerts(runtime)} == {("delivered", 1)}
    assert len(telegram.messages) == 3 and len(hooked(httpserver, "/hook")) == 1
