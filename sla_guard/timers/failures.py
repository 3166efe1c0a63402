"""Clocks whose firing keeps failing for a reason of their own: a bounded retry, then quarantine.

A clock that raised while being fired (not because the database or Redis was away: that is
retried shortly, as often as it takes) is tried again after :data:`RETRY_WAITS`. After
:data:`MOST_FAILURES` failures in a row it is set aside: its timer is armed at
:data:`~sla_guard.ingest.processing.SET_ASIDE_AT` (never), and its lead is quarantined with the
reason, like a lead whose events cannot be applied. It shows in ``GET /api/quarantine``, in
``sla-guard quarantine list`` and in the ``sla_guard_timers_set_aside`` metric. Retrying the
lead (API or CLI), or a new event for it, releases it; the reconciler then arms the clock again.

Failures are counted in Redis, per queue: a count lost with Redis only buys a clock a few more
tries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from sla_guard.core.bounds import clean_text
from sla_guard.ingest.processing import SET_ASIDE_AT
from sla_guard.runtime import Runtime
from sla_guard.store.outbox import clock_leads
from sla_guard.store.quarantine import quarantine

log = logging.getLogger("sla_guard.timers.failures")

FAILURES_KEY = "sla-guard:{queue}:timer-failures"
"""Redis hash: clock id → failures to fire in a row."""

MOST_FAILURES = 4
"""Failures in a row after which a clock is set aside and its lead quarantined."""

RETRY_WAITS = (5.0, 30.0, 120.0)
"""Seconds before the next try after the 1st, 2nd, 3rd … failure (the last one repeats)."""


def _key(runtime: Runtime) -> str:
    return FAILURES_KEY.format(queue=runtime.queue_name)


def failed(runtime: Runtime, errors: Mapping[int, Exception]) -> dict[int, datetime]:
    """Count one more failure of each clock in ``errors``; return the instant each one's timer
    is to be settled at: its next try, or :data:`SET_ASIDE_AT` for a clock set aside now (its
    lead is quarantined)."""
    if not errors:
        return {}
    pipe = runtime.redis.pipeline(transaction=False)
    for clock_id in errors:
        pipe.hincrby(_key(runtime), str(clock_id), 1)
    counts = dict(zip(errors, pipe.execute(), strict=True))
    now = runtime.now()
    retry_at = {
        clock_id: now + timedelta(seconds=RETRY_WAITS[min(count, len(RETRY_WAITS)) - 1])
        for clock_id, count in counts.items()
        if count < MOST_FAILURES
    }
    given_up = [clock_id for clock_id, count in counts.items() if count >= MOST_FAILURES]
    if given_up:
        with runtime.db.session() as session:
            leads = clock_leads(session, given_up)
            for clock_id in given_up:
                if clock_id not in leads:
                    continue
                exc = errors[clock_id]
                reason = clean_text(f"clock {clock_id} cannot fire: {exc or type(exc).__name__}", 2000)
                quarantine(session, leads[clock_id], type(exc).__name__[:200], reason, now)
        runtime.redis.hdel(_key(runtime), *[str(clock_id) for clock_id in given_up])
        for clock_id in given_up:
            log.error(
                "clock set aside: its firing keeps failing; its lead is quarantined",
                extra={"clock_id": clock_id, "lead_id": leads.get(clock_id), "failures": counts[clock_id]},
            )
    for clock_id, at in retry_at.items():
        log.warning(
            "clock not fired; tried again later",
            extra={"clock_id": clock_id, "failures": counts[clock_id], "retry_in_s": (at - now).total_seconds()},
        )
    return {**retry_at, **dict.fromkeys(given_up, SET_ASIDE_AT)}


def forget(runtime: Runtime, clock_ids: list[int]) -> None:
    """The clocks fired: their count of failures starts again from nothing."""
    if clock_ids:
        runtime.redis.hdel(_key(runtime), *[str(clock_id) for clock_id in clock_ids])
