"""From accepted event to delivered alert, with the real worker, Redis and both databases.

Time is the injected clock; the RQ jobs run in the real ``SimpleWorker`` in burst mode.
"""

from __future__ import annotations

from datetime import timedelta

from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from sla_guard.ingest import processing as timers
from sla_guard.ingest.processing import process_lead
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, EventRow, LeadRow
from sla_guard.timers.reconciler import reconcile
from tests.support.firing import run_timer
from tests.support.webhooks import HOT_LEAD as HOT
from tests.support.webhooks import received


def one(runtime, model, *where):
    with runtime.db.session() as session:
        return session.execute(select(model).where(*where)).scalars().all()


def the_clock(runtime, lead_id="L-1001") -> ClockRow:
    [clock] = one(runtime, ClockRow, ClockRow.lead_id == lead_id, ClockRow.name == "first_touch")
    return clock


def scheduled_jobs(runtime) -> dict[str, float]:
    registry = ScheduledJobRegistry(runtime.queue_name, connection=runtime.redis)
    return {job_id: registry.get_scheduled_time(job_id).timestamp() for job_id in registry.get_job_ids()}


def armed_timers(runtime, with_scores: bool = False) -> list:
    """The clocks armed in the timer sorted set (with their fire instants)."""
    members = runtime.redis.zrange(timers.timers_key(runtime.queue_name), 0, -1, withscores=with_scores)
    return [(int(m), score) for m, score in members] if with_scores else [int(m) for m in members]


def test_created_lead_gets_its_deadline_in_the_database_and_a_timer_in_redis(
    sink, app, client, runtime, clock, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock_row = the_clock(runtime)
    assert clock_row.due_at == clock() + timedelta(minutes=15)
    assert clock_row.next_fire_at == clock() + timedelta(minutes=12)  # the 80% warning comes first
    warn_at = (clock() + timedelta(minutes=12)).timestamp()
    assert timers.armed_at(runtime.redis, runtime.queue_name, [clock_row.id]) == {clock_row.id: warn_at}
    assert timers.count_armed(runtime.redis, runtime.queue_name) == 1
    assert scheduled_jobs(runtime) == {}  # SLA timers never go through RQ's whole-second scheduler
    [lead] = one(runtime, LeadRow)
    assert (lead.rule_name, lead.owner, lead.known) == ("hot website leads", "anna", True)
    assert lead.rule_version == runtime.rules.current().version
    assert all(row.processed_at is not None for row in one(runtime, EventRow))


def test_untouched_lead_warns_then_escalates_once_per_level(
    sink, app, client, runtime, clock, event, post_signed, run_worker
):
    start = clock()
    post_signed(client, event("e1", "lead.created", start, lead=HOT), start)
    run_worker(runtime)
    clock_id = the_clock(runtime).id

    clock.advance(minutes=11, seconds=59)
    assert run_timer(runtime, clock_id).escalation_ids == []  # early: nothing before its time
    assert received(sink) == []

    clock.advance(seconds=1)
    run_timer(runtime, clock_id)
    [warning] = received(sink)
    assert (warning["kind"], warning["level"], warning["recipient"]) == ("first_touch.warning", 0, "anna")

    clock.advance(minutes=3, seconds=2)
    run_timer(runtime, clock_id)
    run_timer(runtime, clock_id)  # a timer firing twice changes nothing
    breach = received(sink)[1:]
    assert sorted(alert["recipient"] for alert in breach) == ["anna", "olga"]
    alert = breach[0]
    assert {k: alert[k] for k in ("kind", "level", "lead_id", "owner", "rule", "late_by_s", "lead_url")} == {
        "kind": "first_touch.breach",
        "level": 1,
        "lead_id": "L-1001",
        "owner": "anna",
        "rule": "hot website leads",
        "late_by_s": 2,
        "lead_url": "https://crm.example/leads/1001",
    }
    assert alert["due_at"] == (start + timedelta(minutes=15)).isoformat().replace("+00:00", "Z")
    assert alert["text"].startswith("Lead ACME #L-1001 missed its first touch.\nThe deadline passed at ")
    assert "the SLA was 15 min." in alert["text"]
    escalations = one(runtime, EscalationRow)
    assert sorted((e.level, e.kind) for e in escalations) == [(0, "first_touch.warning"), (1, "first_touch.breach")]
    assert {a.status for a in one(runtime, AlertRow)} == {"delivered"}
    assert the_clock(runtime).next_fire_at == start + timedelta(minutes=75)


def test_the_top_of_the_ladder_reassigns_to_the_next_team_member(
    sink, app, client, runtime, clock, event, post_signed, run_worker
):
    start = clock()
    post_signed(client, event("e1", "lead.created", start, lead=HOT), start)
    run_worker(runtime)
    clock_id = the_clock(runtime).id
    clock.advance(minutes=80)
    run_timer(runtime, clock_id)
    kinds = sorted((a["level"], a["recipient"]) for a in received(sink))
    assert kinds == [(0, "anna"), (1, "anna"), (1, "olga"), (2, "ivan")]
    [lead] = one(runtime, LeadRow)
    assert lead.owner == "boris"
    [top] = one(runtime, EscalationRow, EscalationRow.level == 2)
    assert top.reassigned_to == "boris"
    assert the_clock(runtime).next_fire_at is None


def test_touched_lead_never_alerts_and_its_timer_is_removed(
    sink, app, client, runtime, clock, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock_id = the_clock(runtime).id
    assert armed_timers(runtime) == [clock_id]
    clock.advance(minutes=5)
    post_signed(client, event("e2", "lead.touched", clock(), touch={"channel": "call", "by": "anna"}), clock())
    run_worker(runtime)
    assert armed_timers(runtime) == []
    assert the_clock(runtime).stop_reason == "touched"
    clock.advance(hours=3)
    run_timer(runtime, clock_id)
    reconcile(runtime)
    run_worker(runtime)
    assert received(sink) == []
    assert one(runtime, EscalationRow) == []


def test_a_duplicate_webhook_changes_nothing(sink, app, client, runtime, clock, event, post_signed, run_worker):
    payload = event("e1", "lead.created", clock(), lead=HOT)
    post_signed(client, payload, clock())
    run_worker(runtime)
    before = the_clock(runtime)
    clock.advance(minutes=1)
    assert post_signed(client, payload, clock()).get_json() == {"accepted": [], "duplicates": ["e1"]}
    run_worker(runtime)
    after = the_clock(runtime)
    assert (after.id, after.due_at, after.next_fire_at) == (before.id, before.due_at, before.next_fire_at)
    assert len(one(runtime, EventRow)) == 1


def test_late_older_event_is_applied_in_time_order(sink, app, client, runtime, clock, event, post_signed, run_worker):
    start = clock()
    post_signed(client, event("e1", "lead.created", start, lead=HOT), start)
    post_signed(client, event("e3", "lead.closed", start + timedelta(minutes=9), outcome="lost", reason="price"), start)
    run_worker(runtime)
    post_signed(
        client, event("e2", "lead.stage_changed", start + timedelta(minutes=5), lead={"stage": "qualification"}), start
    )
    run_worker(runtime)
    [lead] = one(runtime, LeadRow)
    assert (lead.status, lead.reason, lead.stage) == ("lost", "price", "qualification")
    clock_row = the_clock(runtime)
    assert (clock_row.stopped_at, clock_row.stop_reason) == (start + timedelta(minutes=5), "stage_changed")


def test_flushed_redis_is_rearmed_from_the_database(
    sink, app, client, runtime, clock, redis_conn, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    expected = armed_timers(runtime, with_scores=True)
    redis_conn.delete(timers.timers_key(runtime.queue_name))
    assert armed_timers(runtime) == []
    report = reconcile(runtime)
    assert report.timers_armed == 1
    assert armed_timers(runtime, with_scores=True) == expected
    assert reconcile(runtime).timers_armed == 0


def test_events_accepted_while_redis_was_down_are_applied_by_the_reconciler(
    sink, settings, clock, runtime, event, post_signed
):
    from sla_guard import create_app

    down = create_app({**settings, "TESTING": True, "CLOCK": clock, "REDIS_URL": "redis://127.0.0.1:9/0"})
    assert post_signed(down.test_client(), event("e1", "lead.created", clock(), lead=HOT), clock()).status_code == 202
    assert one(runtime, ClockRow) == []
    clock.advance(seconds=3)
    assert reconcile(runtime).events_applied == 1
    assert the_clock(runtime).due_at == clock() - timedelta(seconds=3) + timedelta(minutes=15)


def test_an_overdue_clock_whose_timer_vanished_fires_from_the_reconciler_once(
    sink, app, client, runtime, clock, redis_conn, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    redis_conn.delete(timers.timers_key(runtime.queue_name))
    clock.advance(minutes=16)
    assert reconcile(runtime).timers_fired == 1
    run_worker(runtime)
    assert sorted((a["level"], a["recipient"]) for a in received(sink)) == [(0, "anna"), (1, "anna"), (1, "olga")]
    reconcile(runtime)
    run_worker(runtime)
    assert len(received(sink)) == 3


def test_failed_delivery_is_retried_then_recorded(
    sink_url, httpserver, app, client, runtime, clock, event, post_signed, run_worker
):
    httpserver.expect_ordered_request("/alerts").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/alerts").respond_with_data("ok")
    post_signed(client, event("e1", "lead.created", clock(), lead={**HOT, "owner": "ivan"}), clock())
    run_worker(runtime)
    clock.advance(minutes=12)
    run_timer(runtime, the_clock(runtime).id)
    [alert] = one(runtime, AlertRow)
    assert (alert.status, alert.attempts, alert.last_error) == ("pending", 1, "HTTP 503")
    clock.advance(seconds=5)
    reconcile(runtime)
    run_worker(runtime)
    [alert] = one(runtime, AlertRow)
    assert (alert.status, alert.attempts, alert.last_error) == ("delivered", 2, None)
    assert len(httpserver.log) == 2


def test_permanent_failure_stops_retrying(
    sink_url, httpserver, app, client, runtime, clock, event, post_signed, run_worker
):
    httpserver.expect_request("/alerts").respond_with_data("gone", status=404)
    post_signed(client, event("e1", "lead.created", clock(), lead={**HOT, "owner": "ivan"}), clock())
    run_worker(runtime)
    clock.advance(minutes=12)
    run_timer(runtime, the_clock(runtime).id)
    clock.advance(minutes=2)
    reconcile(runtime)
    run_worker(runtime)
    [alert] = one(runtime, AlertRow)
    assert (alert.status, alert.attempts, alert.last_error) == ("failed", 1, "HTTP 404")
    assert len(httpserver.log) == 1


def test_unknown_lead_is_kept_and_gets_no_clock(sink, app, client, runtime, clock, event, post_signed, run_worker):
    post_signed(
        client, event("e1", "lead.touched", clock(), lead={"owner": "anna"}, touch={"channel": "call"}), clock()
    )
    run_worker(runtime)
    [lead] = one(runtime, LeadRow)
    assert (lead.known, lead.first_touch_at, lead.owner) == (False, clock(), "anna")
    assert one(runtime, ClockRow) == []


def test_a_rule_removed_from_the_file_ends_its_clocks_cleanly(
    sink, app, client, runtime, clock, rules_path, event, post_signed, run_worker
):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    clock_id = the_clock(runtime).id
    rules_path.write_text(rules_path.read_text().replace("hot website leads", "hot leads"))
    assert runtime.rules.reload()
    clock.advance(minutes=20)
    run_timer(runtime, clock_id)
    row = the_clock(runtime)
    assert (row.stop_reason, row.next_fire_at) == ("rule_removed", None)
    assert received(sink) == []


def test_processing_twice_is_harmless(sink, app, client, runtime, clock, event, post_signed, run_worker):
    post_signed(client, event("e1", "lead.created", clock(), lead=HOT), clock())
    run_worker(runtime)
    process_lead(runtime, "L-1001")
    process_lead(runtime, "L-1001")
    assert len(one(runtime, ClockRow)) == 1
