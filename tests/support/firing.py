"""Fire one clock now, as a worker's timer loop would, for tests that move the clock by hand."""

from __future__ import annotations

from sla_guard.ingest.processing import apply_timer_changes
from sla_guard.runtime import Runtime
from sla_guard.timers.firing import FireResult, fire_clocks, hand_on


def run_timer(runtime: Runtime, clock_id: int) -> FireResult:
    """Fire the clock (the database decides what it owes now), re-arm its timer, apply what a
    reassignment changed and make the first attempts of its alerts, task and CRM push."""
    results = fire_clocks(runtime, [clock_id])
    result = results[clock_id]
    if result.change is not None:
        apply_timer_changes(runtime, [result.change])
    hand_on(runtime, results)
    return result
