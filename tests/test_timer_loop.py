"""The timer loop: clocks armed in a Redis sorted set, claimed when due, fired a batch per
transaction by the loop itself, settled afterwards. Real Redis, both databases, the real RQ
worker; time is the injected clock."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from sla_guard.ingest import processing as timers
from sla_guard.ingest.processing import drain, wait_for_timers
from sla_guard.store.models import AlertRow, ClockRow, EscalationRow
from sla_guard.timers.firing import fire_batch, fire_due, timer_loop

HOT = {"source": "website", "priority": "hot", "owner": "anna", "team": "inbound"}


@pytest.fixture
def sink(httpserver, monkeypatch):
    """The managers' webhook the rules' `sink` channel points at, answering 200."""
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/alerts"))
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    return httpserver


def received(sink) -> list[dict]:
    return [json.loads(request.data) for request, _ in sink.log]


def clocks(runtime) -> list[ClockRow]:
    with runtime.db.session() as session:
        return list(session.execute(select(ClockRow).order_by(ClockRow.id)).scalars())


def rows(runtime, model) -> list:
    with runtime.db.session() as session:
        return list(session.execute(select(model)).scalars())


@pytest.fixture
def create_leads(event, post_signed, run_worker):
    def create_leads(client, runtime, clock, count: int) -> list[ClockRow]:
        start = clock()
        events = [event(f"e{n}", "lead.created", start, lead_id=f"L-{n}", lead=HOT) for n in range(count)]
        assert post_signed(client, events, start).status_code == 202
        run_worker(runtime)
        return clocks(runtime)

    return create_leads


def test_each_clock_is_armed_at_its_exact_instant(sink, app, client, runtime, clock, create_leads):
    clock.advance(microseconds=250_000)  # deadlines that are not on a whole second stay exact
    [row] = create_leads(client, runtime, clock, 1)
    assert row.next_fire_at == clock() + timedelta(minutes=12)
    assert timers.armed_at(runtime.redis, runtime.queue_name, [row.id]) == {row.id: row.next_fire_at.timestamp()}
    assert timers.next_due(runtime.redis, runtime.queue_name) == row.next_fire_at.timestamp()


def test_a_clock_is_fired_only_once_its_instant_has_come(sink, app, client, runtime, clock, create_leads):
    [row] = create_leads(client, runtime, clock, 1)
    clock.current = row.next_fire_at - timedelta(milliseconds=1)
    assert fire_due(runtime) == 0
    assert received(sink) == [] and rows(runtime, EscalationRow) == []
    clock.current = row.next_fire_at
    assert fire_due(runtime) == 1
    assert [alert["kind"] for alert in received(sink)] == ["first_touch.warning"]
    assert fire_due(runtime) == 0  # settled at the next step: not fired again


def test_due_clocks_fire_in_batches_and_each_fires_once(sink, app, client, runtime, clock, run_worker, create_leads):
    rows_ = create_leads(client, runtime, clock, 7)
    clock.advance(minutes=12)
    fired = []
    assert fire_due(runtime, then=lambda clock_id, items: fired.append((clock_id, items)), batch=3) == 7
    assert sorted(clock_id for clock_id, _ in fired) == sorted(row.id for row in rows_)
    assert received(sink) == []  # handed on: the alerts are recorded, their delivery is the caller's
    assert {a.status for a in rows(runtime, AlertRow)} == {"pending"} and len(rows(runtime, AlertRow)) == 7
    run_worker(runtime)  # nothing fires twice; the alerts not yet sent are the reconciler's to send
    assert [e.level for e in rows(runtime, EscalationRow)] == [0] * 7
    from sla_guard.outbox.base import attempt_now

    for _clock_id, items in fired:
        attempt_now(runtime, items)
    warnings = received(sink)
    assert sorted(alert["lead_id"] for alert in warnings) == sorted(f"L-{n}" for n in range(7))
    assert {alert["kind"] for alert in warnings} == {"first_touch.warning"}
    # each timer moved on to the clock's next step (the breach at 15 minutes)
    breach = (clock() + timedelta(minutes=3)).timestamp()
    armed = timers.armed_at(runtime.redis, runtime.queue_name, [row.id for row in rows_])
    assert armed == {row.id: breach for row in rows_}
    assert fire_due(runtime) == 0
    run_worker(runtime)
    assert len(received(sink)) == 7


def test_a_batch_of_due_stale_and_stopped_clocks_fires_only_what_the_database_says(
    sink, app, client, runtime, clock, event, post_signed, run_worker, create_leads
):
    rows_ = create_leads(client, runtime, clock, 4)
    by_lead = {row.lead_id: row.id for row in rows_}
    clock.advance(minutes=1)
    post_signed(client, event("t1", "lead.touched", clock(), lead_id="L-1", touch={"channel": "call"}), clock())
    run_worker(runtime)  # L-1 was touched: its clock stopped
    clock.advance(minutes=11)  # L-0 and L-3 are due
    later = clock() + timedelta(minutes=5)
    with runtime.db.session() as session:  # L-2's clock was moved 5 minutes later meanwhile
        moved = session.get(ClockRow, by_lead["L-2"])
        moved.started_at += timedelta(minutes=5)
        moved.due_at += timedelta(minutes=5)
        moved.next_fire_at = later
    timers.arm(runtime.redis, runtime.queue_name, dict.fromkeys(by_lead.values(), clock()))  # stale timers too
    ids, lease = timers.claim_due(runtime.redis, runtime.queue_name, clock().timestamp(), 10)
    assert sorted(ids) == sorted(by_lead.values())
    assert fire_batch(runtime, ids, lease) == 4
    assert sorted(alert["lead_id"] for alert in received(sink)) == ["L-0", "L-3"]
    armed = timers.armed_at(runtime.redis, runtime.queue_name, ids)
    assert by_lead["L-1"] not in armed  # stopped: nothing more to fire
    assert armed[by_lead["L-2"]] == later.timestamp()  # never early: armed at the database's instant
    breach = (clock() + timedelta(minutes=3)).timestamp()
    assert armed[by_lead["L-0"]] == armed[by_lead["L-3"]] == breach
    assert fire_batch(runtime, ids, lease) == 4  # the same batch again (a repeated, stale timer) adds nothing
    assert len(received(sink)) == 2 and len(rows(runtime, EscalationRow)) == 2


def test_a_clock_that_cannot_fire_spares_its_batch_then_is_set_aside_with_its_lead_quarantined(
    sink, app, client, runtime, clock, run_worker, create_leads
):
    from sla_guard.ingest.processing import set_aside_count
    from sla_guard.metrics import TimerCollector, render
    from sla_guard.store.quarantine import quarantined_ids, release
    from sla_guard.timers import failures
    from sla_guard.timers.reconciler import reconcile

    rows_ = create_leads(client, runtime, clock, 3)
    broken = rows_[1]
    with runtime.db.session() as session:  # a stored clock the rules can no longer read
        session.get(ClockRow, broken.id).name = "follow_up:call back:first"
    clock.advance(minutes=12)
    assert fire_due(runtime) == 3
    assert sorted(alert["lead_id"] for alert in received(sink)) == ["L-0", "L-2"]  # the others fired
    retry_at = clock() + timedelta(seconds=failures.RETRY_WAITS[0])
    assert timers.armed_at(runtime.redis, runtime.queue_name, [broken.id]) == {broken.id: retry_at.timestamp()}
    for failure in range(2, failures.MOST_FAILURES + 1):  # tried again a bounded number of times
        wait = failures.RETRY_WAITS[min(failure - 1, len(failures.RETRY_WAITS)) - 1]
        clock.advance(seconds=wait - 0.5)
        assert fire_due(runtime) == 0  # not before its next try
        clock.advance(seconds=0.5)
        assert fire_due(runtime) == 1, failure
    with runtime.db.session() as session:
        assert quarantined_ids(session) == ["L-1"]
    set_aside = timers.SET_ASIDE_AT.timestamp()
    assert timers.armed_at(runtime.redis, runtime.queue_name, [broken.id]) == {broken.id: set_aside}
    assert b"sla_guard_timers_set_aside 1.0" in render(
        runtime.db, [TimerCollector(set_aside_count, runtime.redis, runtime.queue_name)]
    )
    clock.advance(seconds=10)
    reconcile(runtime)  # set aside: the reconciler does not arm it again while its lead is held
    assert fire_due(runtime) == 0
    assert timers.armed_at(runtime.redis, runtime.queue_name, [broken.id]) == {broken.id: set_aside}
    with runtime.db.session() as session:  # the operator repairs the clock and retries the lead
        session.get(ClockRow, broken.id).name = "first_touch"
        release(session, ["L-1"])
    reconcile(runtime)
    assert fire_due(runtime) == 1
    assert sorted(alert["lead_id"] for alert in received(sink)) == ["L-0", "L-1", "L-2"]
    assert b"sla_guard_timers_set_aside 0.0" in render(
        runtime.db, [TimerCollector(set_aside_count, runtime.redis, runtime.queue_name)]
    )


def test_two_loops_firing_the_same_due_clocks_fire_each_once(sink, app, client, runtime, clock, create_leads):
    rows_ = create_leads(client, runtime, clock, 6)
    clock.advance(minutes=12)
    start = threading.Barrier(2)
    counts = []

    def loop():
        start.wait()
        counts.append(fire_due(runtime, batch=2))

    workers = [threading.Thread(target=loop) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sum(counts) == 6
    assert sorted(alert["lead_id"] for alert in received(sink)) == sorted(row.lead_id for row in rows_)
    assert len(rows(runtime, EscalationRow)) == 6


def test_a_timer_whose_worker_died_is_claimed_again_when_its_lease_ends(
    sink, app, client, runtime, clock, run_worker, create_leads
):
    [row] = create_leads(client, runtime, clock, 1)
    clock.advance(minutes=12)
    claimed, _lease = timers.claim_due(runtime.redis, runtime.queue_name, clock().timestamp(), 10)
    assert claimed == [row.id]  # the worker that claimed it was killed before it committed
    clock.advance(seconds=timers.LEASE_S - 1)
    assert fire_due(runtime) == 0
    clock.advance(seconds=1)
    assert fire_due(runtime) == 1
    run_worker(runtime)
    assert [(alert["lead_id"], alert["level"]) for alert in received(sink)] == [("L-0", 0)]


def test_a_stale_timer_changes_nothing_and_is_settled_to_the_database(sink, app, client, runtime, clock, create_leads):
    [row] = create_leads(client, runtime, clock, 1)
    early = {row.id: clock() + timedelta(minutes=1)}  # armed earlier than the database says
    timers.arm(runtime.redis, runtime.queue_name, early)
    clock.advance(minutes=1)
    [claimed], lease = timers.claim_due(runtime.redis, runtime.queue_name, clock().timestamp(), 10)
    assert fire_batch(runtime, [claimed], lease) == 1
    assert received(sink) == [] and rows(runtime, EscalationRow) == []
    assert timers.armed_at(runtime.redis, runtime.queue_name, [row.id]) == {row.id: row.next_fire_at.timestamp()}


def test_settling_never_overwrites_a_timer_moved_while_the_job_ran(sink, app, client, runtime, clock, create_leads):
    [row] = create_leads(client, runtime, clock, 1)
    clock.advance(minutes=12)
    [claimed], lease = timers.claim_due(runtime.redis, runtime.queue_name, clock().timestamp(), 10)
    moved = clock() + timedelta(minutes=30)
    timers.arm(runtime.redis, runtime.queue_name, {claimed: moved})  # newer events re-armed it meanwhile
    assert timers.settle(runtime.redis, runtime.queue_name, lease, {claimed: None}) == 0
    assert timers.armed_at(runtime.redis, runtime.queue_name, [claimed]) == {claimed: moved.timestamp()}
    assert timers.settle(runtime.redis, runtime.queue_name, moved.timestamp(), {claimed: None}) == 1
    assert timers.count_armed(runtime.redis, runtime.queue_name) == 0


def test_a_touched_lead_loses_its_timer_and_a_far_deadline_waits_in_the_database(
    sink, app, client, runtime, clock, settings, event, post_signed, run_worker, create_leads
):
    [row] = create_leads(client, runtime, clock, 1)
    clock.advance(minutes=1)
    post_signed(client, event("t1", "lead.touched", clock(), lead_id="L-0", touch={"channel": "call"}), clock())
    run_worker(runtime)
    assert timers.count_armed(runtime.redis, runtime.queue_name) == 0
    # a deadline beyond the arming horizon is not kept in Redis until the reconciler brings it near
    far = {"source": "partner", "owner": "anna"}  # "everything else": 2 h
    post_signed(client, event("f1", "lead.created", clock(), lead_id="L-far", lead=far), clock())
    run_worker(runtime)
    [far_clock] = [c for c in clocks(runtime) if c.lead_id == "L-far"]
    assert far_clock.next_fire_at == clock() + timedelta(hours=2)
    assert timers.count_armed(runtime.redis, runtime.queue_name) == 0


def test_the_timer_loop_thread_fires_due_clocks(sink, app, client, runtime, clock, run_worker, create_leads):
    [row] = create_leads(client, runtime, clock, 1)
    clock.advance(minutes=12)
    stop = threading.Event()
    loop = threading.Thread(target=timer_loop, args=(runtime, stop), daemon=True)
    loop.start()
    try:
        for _ in range(200):
            if received(sink):
                break
            stop.wait(0.05)
    finally:
        stop.set()
        loop.join(timeout=5)
    assert [alert["kind"] for alert in received(sink)] == ["first_touch.warning"]
    assert [e.level for e in rows(runtime, EscalationRow)] == [0]
    assert {a.status for a in rows(runtime, AlertRow)} == {"delivered"}


def test_timer_work_waiting_is_what_the_pump_steps_aside_for(
    sink, app, client, runtime, clock, run_worker, create_leads
):
    [row] = create_leads(client, runtime, clock, 1)
    now = row.next_fire_at.timestamp()
    assert not timers.timer_work_waiting(runtime.redis, runtime.queue_name, now - 0.001)
    assert timers.timer_work_waiting(runtime.redis, runtime.queue_name, now)  # due
    timers.claim_due(runtime.redis, runtime.queue_name, now, 10)
    assert not timers.timer_work_waiting(runtime.redis, runtime.queue_name, now)  # claimed, not yet firing
    timers.mark_firing(runtime.redis, runtime.queue_name, "loop-1", now + 30)
    assert timers.timer_work_waiting(runtime.redis, runtime.queue_name, now)  # being fired
    assert not timers.timer_work_waiting(
        runtime.redis, runtime.queue_name, now + 31
    )  # a mark left by a dead loop lapses
    timers.unmark_firing(runtime.redis, runtime.queue_name, "loop-1")
    assert not timers.timer_work_waiting(runtime.redis, runtime.queue_name, now)


def test_the_pump_applies_new_events_after_due_timers(
    sink, app, client, runtime, clock, event, post_signed, create_leads
):
    """With a timer due (by the wall clock) the pump waits for it, up to its limit."""
    [row] = create_leads(client, runtime, clock, 1)
    timers.arm(runtime.redis, runtime.queue_name, {row.id: clock() - timedelta(seconds=1)})
    assert wait_for_timers(runtime, most_s=0.2) >= 0.2  # held back the whole time the timer was due
    post_signed(client, event("u1", "lead.updated", clock(), lead_id="L-0", lead={"amount": 5}), clock())
    assert drain(runtime, yield_to_timers=True) == 1  # after its limit the backlog still moves
    timers.disarm(runtime.redis, runtime.queue_name, [row.id])
    assert wait_for_timers(runtime, most_s=5) < 5


def test_the_reconciler_in_a_worker_applies_lost_events_after_due_timers(
    sink, app, client, runtime, clock, event, post_signed, monkeypatch, create_leads
):
    """Lost events (their doorbell rang long ago) wait for due timers in a worker's reconciler,
    as the pump's do, and still move after the limit."""
    import time

    from sla_guard.ingest.processing import PENDING_KEY
    from sla_guard.store.models import EventRow
    from sla_guard.timers import reconciler

    [row] = create_leads(client, runtime, clock, 1)
    post_signed(client, event("u1", "lead.updated", clock(), lead_id="L-0", lead={"amount": 5}), clock())
    runtime.redis.delete(PENDING_KEY.format(queue=runtime.queue_name))  # its doorbell was lost
    clock.advance(seconds=10)
    timers.arm(runtime.redis, runtime.queue_name, {row.id: clock() - timedelta(seconds=600)})  # due by the wall clock
    monkeypatch.setattr(reconciler, "STEP_ASIDE_S", 0.3)
    started = time.monotonic()
    assert reconciler.reconcile(runtime, step_aside=True).events_applied == 1
    assert time.monotonic() - started >= 0.3  # held back while the timer was due
    assert all(row.processed_at is not None for row in rows(runtime, EventRow))


def test_new_events_are_applied_in_batches_and_one_bad_lead_spares_the_others(
    sink, app, client, runtime, clock, event, post_signed, store_unreadable_event
):
    from sla_guard.ingest.processing import apply_leads
    from sla_guard.store.models import EventRow, LeadRow

    start = clock()
    events = [event(f"e{n}", "lead.created", start, lead_id=f"L-{n}", lead=HOT) for n in range(3)]
    assert post_signed(client, events, start).status_code == 202
    store_unreadable_event(runtime, "L-bad", start)
    assert apply_leads(runtime, ["L-0", "L-bad", "L-1", "L-2"]) == ["L-0", "L-1", "L-2"]  # L-bad is set aside
    assert sorted(lead.lead_id for lead in rows(runtime, LeadRow) if lead.known) == ["L-0", "L-1", "L-2"]
    unapplied = [row.event_id for row in rows(runtime, EventRow) if row.processed_at is None]
    assert unapplied == ["broken"]
    assert timers.count_armed(runtime.redis, runtime.queue_name) == 3
