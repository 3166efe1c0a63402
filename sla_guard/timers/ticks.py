"""A tick fired: fire every clock of its second and shard (see :mod:`sla_guard.timers.arming`)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sla_guard import runtime as runtime_module
from sla_guard.queueing import job
from sla_guard.runtime import Runtime
from sla_guard.store.repository import clock_ids_in_tick
from sla_guard.timers import arming as timers
from sla_guard.timers.escalation import EARLY_WAIT_LIMIT, run_timer

log = logging.getLogger("sla_guard.timers.ticks")


def clocks_of_tick(runtime: Runtime, epoch: int, shard: int, shards: int) -> list[int]:
    """Clocks whose ``next_fire_at`` rounds up to second ``epoch`` and that belong to ``shard``."""
    with runtime.db.session() as session:
        return clock_ids_in_tick(session, epoch, shard, shards)


def fire_tick(runtime: Runtime, epoch: int, shard: int, shards: int) -> int:
    """Fire the tick's clocks; return how many there were. Never fires before the second came."""
    early = datetime.fromtimestamp(epoch, UTC) - runtime.now()
    if early > EARLY_WAIT_LIMIT:
        timers.arm(runtime.redis, epoch, shard, shards, runtime.queue_name)
        return 0
    if early > timedelta(0):
        time.sleep(early.total_seconds())
    clock_ids = clocks_of_tick(runtime, epoch, shard, shards)
    for clock_id in clock_ids:
        try:
            run_timer(runtime, clock_id)
        except Exception:  # one clock's trouble must not hold up the others; the reconciler retries it
            log.exception("clock not fired", extra={"clock_id": clock_id, "tick": epoch, "shard": shard})
    if clock_ids:
        log.debug("tick fired", extra={"tick": epoch, "shard": shard, "clocks": len(clock_ids)})
    return len(clock_ids)


@job()
def fire_tick_job(epoch: int, shard: int, shards: int) -> int:
    """Job: a timer tick; record and send whatever the clocks due in its second and shard owe."""
    fired = fire_tick(runtime_module.current(), epoch, shard, shards)
    log.debug("tick done", extra={"tick": epoch, "shard": shard, "clocks": fired})
    return fired
