"""A deadline beyond the arming horizon waits in the database only; the reconciler arms it when
it comes within the horizon, and its alert goes out on time. Real Redis, both databases, the
real RQ worker; time is the injected clock."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from sla_guard.ingest import processing as timers
from sla_guard.store.models import ClockRow
from sla_guard.timers.firing import fire_due
from sla_guard.timers.reconciler import reconcile

HORIZON = timedelta(minutes=15)  # SLA_GUARD_ARM_HORIZON_S's default
PARTNER = {"source": "partner", "owner": "anna"}  # the rules' "everything else": first touch within 2 h


def far_clock(runtime) -> ClockRow:
    with runtime.db.session() as session:
        return session.execute(select(ClockRow).where(ClockRow.lead_id == "L-far")).scalar_one()


def armed(runtime, clock_id: int) -> dict[int, float]:
    return timers.armed_at(runtime.redis, runtime.queue_name, [clock_id])


def test_a_far_deadline_is_armed_once_it_comes_within_the_horizon(
    sink, app, client, runtime, clock, event, post_signed, run_worker
):
    assert (
        post_signed(client, event("f1", "lead.created", clock(), lead_id="L-far", lead=PARTNER), clock()).status_code
        == 202
    )
    run_worker(runtime)
    row = far_clock(runtime)
    due = clock() + timedelta(hours=2)
    assert row.next_fire_at == due
    assert armed(runtime, row.id) == {}  # two hours away: not in Redis

    clock.current = due - HORIZON - timedelta(seconds=1)
    reconcile(runtime)
    assert armed(runtime, row.id) == {}  # still beyond the horizon

    clock.current = due - HORIZON + timedelta(seconds=1)
    reconcile(runtime)
    assert armed(runtime, row.id) == {row.id: due.timestamp()}  # armed at the exact deadline

    clock.current = due - timedelta(milliseconds=1)
    assert fire_due(runtime) == 0  # not a moment early
    clock.current = due
    assert fire_due(runtime) == 1
    run_worker(runtime)
    alerts = [json.loads(request.data) for request, _ in sink.log]
    assert [(a["lead_id"], a["kind"]) for a in alerts] == [("L-far", "first_touch.breach")]
