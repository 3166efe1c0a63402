"""Daily digests of overdue leads and weekly SLA summaries: due at a local time, sent once per period."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from sla_guard.core.rules.loading import parse_rules
from sla_guard.core.rules.notify_spec import DigestSpec
from sla_guard.outbox.digests import deliver_digest, prepare
from sla_guard.outbox.notify.digest_texts import Overdue, Scope, daily_text, due_periods, managers
from sla_guard.runtime import RulesHolder, Runtime
from sla_guard.store.models import ClockRow, DigestRow
from sla_guard.timers.reconciler import reconcile

RULES = textwrap.dedent("""
    timezone: UTC
    channels:
      sink: {type: webhook, url: "${SINK_URL:-http://127.0.0.1:9/none}"}
      board: {type: webhook, url: "${BOARD_URL:-http://127.0.0.1:9/none}"}
    people:
      anna: {manager: olga, team: inbound, channels: [sink]}
      boris: {manager: olga, team: inbound, channels: [sink]}
      olga: {team: inbound, channels: [sink], locale: ru}
      ivan: {channels: [sink]}
      petr: {channels: [sink]}
    teams:
      inbound: {head: ivan, members: [anna, boris]}
    digests: {daily_at: "09:00", weekly_on: mon, weekly_notify: [board]}
    rules:
      - name: quick
        first_touch: {within: 15m, escalate: [{after: 0m, notify: [owner]}]}
""")


# --- pure -----------------------------------------------------------------------------------


SPEC = DigestSpec.model_validate({"daily_at": "09:00", "weekly_on": "mon", "timezone": "Europe/Moscow"})


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_digests_are_due_at_their_local_time_and_not_long_after():
    monday_0930_msk = utc("2026-11-23T06:30:00")
    periods = due_periods(SPEC, "UTC", monday_0930_msk)
    assert [(p.kind, p.key, p.at, p.start) for p in periods] == [
        ("daily", "2026-11-23", utc("2026-11-23T06:00:00"), utc("2026-11-22T06:00:00")),
        ("weekly", "2026-11-23", utc("2026-11-23T06:00:00"), utc("2026-11-16T06:00:00")),
    ]
    assert due_periods(SPEC, "UTC", utc("2026-11-23T05:59:00")) == []  # before 09:00; yesterday's is too old
    tuesday_early = due_periods(SPEC, "UTC", utc("2026-11-24T05:30:00"))  # a worker down all night catches up
    assert [(p.kind, p.key) for p in tuesday_early] == [("weekly", "2026-11-23")]
    tuesday = due_periods(SPEC, "UTC", utc("2026-11-24T07:00:00"))
    assert [(p.kind, p.key) for p in tuesday] == [("daily", "2026-11-24")]
    assert [p.kind for p in due_periods(SPEC, "UTC", utc("2026-11-24T18:00:00"))] == []
    assert due_periods(None, "UTC", utc("2026-11-23T06:30:00")) == []


def test_managers_are_named_managers_and_team_heads():
    rules = parse_rules(RULES, env={})
    assert managers(rules) == {
        "ivan": Scope(frozenset({"anna", "boris", "olga"}), frozenset({"inbound"})),
        "olga": Scope(frozenset({"anna", "boris"}), frozenset()),
    }


def test_daily_text_lists_the_oldest_first_and_counts_the_rest():
    now = utc("2026-11-23T09:00:00")
    items = [
        Overdue(
            {"lead_id": f"L{i}", "name": f"Lead {i}", "source": "web", "owner": "anna"},
            "first_touch",
            "quick",
            now - timedelta(minutes=i),
        )
        for i in range(1, 33)
    ]
    text = daily_text(items, "en", "2026-11-23", now).splitlines()
    assert text[0] == "Overdue leads of your team on 2026-11-23: 32"
    assert text[1].startswith("• Lead 32 #L32 (web), owner anna: first touch overdue by 32 min")
    assert text[-1] == "…and 2 more" and len(text) == 32
    assert daily_text([], "ru", "2026-11-23", now) == "На 2026-11-23 просроченных лидов в вашей команде нет."


# --- end to end -----------------------------------------------------------------------------


@pytest.fixture
def rules_text():
    return RULES


@pytest.fixture
def clock(make_clock):
    return make_clock(utc("2026-11-23T08:00:00"))  # a Monday


@pytest.fixture
def sink(httpserver, monkeypatch):
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/sink"))
    monkeypatch.setenv("BOARD_URL", httpserver.url_for("/board"))
    httpserver.expect_request("/sink").respond_with_data("ok")
    httpserver.expect_request("/board").respond_with_data("ok")
    return httpserver


def digests_received(sink) -> list[tuple[str, dict]]:
    out = []
    for request, _ in sink.log:
        body = json.loads(request.data)
        if str(body.get("kind", "")).startswith("digest."):
            out.append((request.path, body))
    return out


def rows(runtime) -> list[DigestRow]:
    with runtime.db.session() as session:
        return list(session.execute(select(DigestRow).order_by(DigestRow.id)).scalars())


@pytest.fixture
def leads(event, post_signed, run_worker):
    def leads(client, runtime, clock):
        start = clock()
        post_signed(
            client,
            event(
                "a1",
                "lead.created",
                start,
                lead_id="L1",
                lead={"owner": "anna", "name": "ACME", "url": "https://crm.example/1"},
            ),
            start,
        )
        post_signed(client, event("b1", "lead.created", start, lead_id="L3", lead={"owner": "boris"}), start)
        post_signed(
            client,
            event("b2", "lead.touched", start + timedelta(minutes=5), lead_id="L3", touch={"channel": "call"}),
            start,
        )
        post_signed(
            client,
            event("c1", "lead.created", start + timedelta(minutes=55), lead_id="L2", lead={"owner": "boris"}),
            start,
        )
        run_worker(runtime)

    return leads


def test_the_morning_digests_go_out_once(sink, app, client, runtime, clock, settings, run_worker, leads):
    leads(client, runtime, clock)
    clock.current = utc("2026-11-23T08:20:00")  # L1's deadline has passed: its escalation fires
    reconcile(runtime)
    run_worker(runtime)
    clock.current = utc("2026-11-23T09:00:05")
    reconcile(runtime)
    run_worker(runtime)
    got = digests_received(sink)
    daily = {body["recipient"]: body for path, body in got if body["kind"] == "digest.daily"}
    assert set(daily) == {"olga", "ivan"}
    assert [lead["lead_id"] for lead in daily["olga"]["leads"]] == ["L1"]
    assert daily["olga"]["text"].startswith("Просроченные лиды вашей команды на 2026-11-23: 1\n• ACME #L1")
    assert "https://crm.example/1" in daily["olga"]["text"]
    weekly = {(path, body["recipient"]): body for path, body in got if body["kind"] == "digest.weekly"}
    assert set(weekly) == {("/sink", "olga"), ("/sink", "ivan"), ("/board", None)}
    assert weekly[("/board", None)]["summary"] == {
        "clocks": 2,
        "met": 1,
        "compliance": 0.5,
        "first_touch_median_s": 300.0,
        "escalations": 1,
        "overdue_now": 1,
        "by_owner": {"anna": {"met": 0, "clocks": 1}, "boris": {"met": 1, "clocks": 1}},
    }
    assert "1 of 2 first touches on time (50%)" in weekly[("/board", None)]["text"]
    assert {row.status for row in rows(runtime)} == {"delivered"}

    reconcile(runtime)
    run_worker(runtime)
    other = Runtime.from_settings(runtime.settings, rules=RulesHolder(settings["SLA_GUARD_RULES"]))
    other.now = clock
    assert prepare(other, clock()) == []  # another worker finds them recorded
    other.db.dispose()
    assert all(deliver_digest(runtime, row.id) == "not_claimed" for row in rows(runtime))
    assert len(digests_received(sink)) == len(got) == 5

    clock.current = utc("2026-11-24T09:00:01")
    reconcile(runtime)
    run_worker(runtime)
    tuesday = [body for _, body in digests_received(sink)[5:]]
    assert sorted((b["kind"], b["recipient"]) for b in tuesday) == [("digest.daily", "ivan"), ("digest.daily", "olga")]


def test_an_empty_daily_digest_is_recorded_but_not_sent(sink, app, client, runtime, clock, run_worker):
    clock.current = utc("2026-11-24T09:00:01")  # a Tuesday with nothing overdue
    reconcile(runtime)
    run_worker(runtime)
    assert digests_received(sink) == []
    assert {(row.kind, row.status) for row in rows(runtime)} == {("daily", "skipped")}


def test_a_failing_digest_is_retried_with_backoff(sink, app, client, runtime, clock, run_worker):
    sink.clear()
    sink.expect_ordered_request("/sink").respond_with_data("busy", status=503)
    sink.expect_request("/sink").respond_with_data("ok")
    sink.expect_request("/board").respond_with_data("ok")
    clock.current = utc("2026-11-23T09:00:01")  # Monday: the weekly summaries are due
    reconcile(runtime)
    run_worker(runtime)
    weekly = [row for row in rows(runtime) if row.kind == "weekly"]
    assert sorted((row.status, row.attempts) for row in weekly) == [("delivered", 1), ("delivered", 1), ("pending", 1)]
    [waiting] = [row for row in weekly if row.status == "pending"]
    assert (waiting.last_error, waiting.claimed_until) == ("HTTP 503", clock() + timedelta(seconds=2))
    clock.advance(seconds=3)
    reconcile(runtime)
    run_worker(runtime)
    assert {(row.status, row.attempts) for row in rows(runtime) if row.id == waiting.id} == {("delivered", 2)}
    assert len(digests_received(sink)) == 4  # three digests, one of them sent twice after the 503


QUIET_RULES = RULES.replace(
    "olga: {team: inbound, channels: [sink], locale: ru}",
    'olga: {team: inbound, channels: [sink], locale: ru, quiet_hours: {from: "20:00", to: "09:30"}}',
)


@pytest.mark.parametrize("rules_text", [QUIET_RULES])
def test_a_digest_due_in_quiet_hours_waits_for_them_to_end(sink, app, client, runtime, clock, run_worker, leads):
    leads(client, runtime, clock)
    clock.current = utc("2026-11-23T08:20:00")  # L1 is overdue from now on
    reconcile(runtime)
    run_worker(runtime)
    clock.current = utc("2026-11-23T09:00:05")
    reconcile(runtime)
    run_worker(runtime)
    sent = {(body["kind"], body["recipient"]) for _, body in digests_received(sink)}
    assert ("digest.daily", "ivan") in sent
    assert not any(recipient == "olga" for _, recipient in sent)  # in her quiet hours until 09:30
    held = [row for row in rows(runtime) if row.recipient == "olga"]
    assert {(row.kind, row.status, row.claimed_until) for row in held} == {
        ("daily", "pending", utc("2026-11-23T09:30:00")),
        ("weekly", "pending", utc("2026-11-23T09:30:00")),
    }

    clock.current = utc("2026-11-23T09:29:59")
    reconcile(runtime)
    run_worker(runtime)
    assert not any(body["recipient"] == "olga" for _, body in digests_received(sink))

    clock.current = utc("2026-11-23T09:30:01")
    reconcile(runtime)
    run_worker(runtime)
    to_olga = [body for _, body in digests_received(sink) if body["recipient"] == "olga"]
    assert sorted(body["kind"] for body in to_olga) == ["digest.daily", "digest.weekly"]
    assert [lead["lead_id"] for lead in next(b for b in to_olga if b["kind"] == "digest.daily")["leads"]] == ["L1"]


def test_the_weekly_compliance_is_the_sla_reports(
    sink, app, client, runtime, clock, api_token, event, leads, post_signed, run_worker
):
    """The summary's numbers are the ``sla`` report's for the same week: a cancelled clock is
    counted by neither as decided, and the compliance and median agree with the API."""
    leads(client, runtime, clock)
    post_signed(client, event("d1", "lead.created", clock(), lead_id="L4", lead={"owner": "anna"}), clock())
    run_worker(runtime)
    with runtime.db.session() as session:
        session.execute(
            update(ClockRow)
            .where(ClockRow.lead_id == "L4")
            .values(stopped_at=clock() + timedelta(minutes=1), stop_reason="cancelled")
        )
    clock.current = utc("2026-11-23T09:00:05")
    reconcile(runtime)
    run_worker(runtime)
    [board] = [body for path, body in digests_received(sink) if path == "/board"]
    week = "from=2026-11-16T09:00:00Z&to=2026-11-23T09:00:00Z"
    report = client.get(f"/api/reports/sla?{week}", headers={"Authorization": f"Bearer {api_token}"}).get_json()
    total = report["total"]
    assert total["cancelled"] == 1 and total["leads"] == 4
    assert board["summary"]["clocks"] == total["met"] + total["missed"] + total["overdue"] == 2
    assert board["summary"]["compliance"] == total["compliance"] == 0.5
    assert board["summary"]["first_touch_median_s"] == total["first_touch_p50_s"] == 300.0
