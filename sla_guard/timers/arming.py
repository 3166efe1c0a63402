"""SLA timers in Redis: one sorted set per queue, the only module that knows its layout.

A clock's deadline lives in the database (``next_fire_at``). Its timer is one member of the
sorted set ``sla-guard:<queue>:timers``: the clock id, scored with ``next_fire_at`` as epoch
seconds (sub-second, exact: nothing is rounded). The timer loop (:mod:`sla_guard.timers.firing`)
*claims* the members whose score has come: an atomic script moves them to a lease score a
little in the future. When the loop has fired the clocks it *settles* each one: the member gets
the clock's new ``next_fire_at``, or leaves the set, but only if its score is still the lease
(compare-and-set), so a timer re-armed by newer events meanwhile is never overwritten. A loop
that dies leaves its lease behind; when the lease runs out the clocks are claimed again.

Only clocks due within the arming horizon are kept in Redis (about 100 bytes each); applying
events arms them (:func:`apply_timer_changes`), the reconciler arms the others as they come
near and re-arms anything Redis lost. Whatever else a worker does steps aside while timer work
waits (:func:`wait_for_timers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import StartedJobRegistry

from sla_guard.runtime import Runtime
from sla_guard.store.repository import TimerChange

log = logging.getLogger("sla_guard.timers.arming")

TIMERS_KEY = "sla-guard:{queue}:timers"
"""Sorted set of armed clocks: member = clock id, score = epoch seconds it fires at."""

LEASE_S = 120.0
"""How long a claimed clock is left to its loop before it is claimed again (a worker that died)."""

FIRING_KEY = "sla-guard:{queue}:timers-firing"
"""Sorted set of batches being fired now: member = the firing loop, score = when the mark lapses."""

SET_ASIDE_AT = datetime(9000, 1, 1, tzinfo=UTC)
"""The instant a clock set aside (its firing kept failing) is armed at: never, until released.
Its timer stays in the set, so the reconciler sees it armed and leaves it alone."""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], member)
end
return due
"""

_SETTLE = """
local settled = 0
for i = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    if ARGV[i + 1] == '' then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    end
    settled = settled + 1
  end
end
return settled
"""


def timers_key(queue_name: str) -> str:
    return TIMERS_KEY.format(queue=queue_name)


def timer_queue_name(queue_name: str) -> str:
    """The RQ queue of timer jobs: workers take from it before anything else."""
    return f"{queue_name}-timers"


def score_of(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("timers take aware datetimes only")
    return at.timestamp()


def arm(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Arm (or move) the timers of these clocks to fire at the given instants."""
    if fire_at:
        connection.zadd(timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()})


def arm_missing(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Arm the timers of clocks not armed at all; a timer already there (or leased) is kept."""
    if fire_at:
        connection.zadd(
            timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()}, nx=True
        )


def bring_forward(connection: Redis, queue_name: str, fire_at: Mapping[int, datetime]) -> None:
    """Move timers that are armed later than these instants to them (never later)."""
    if fire_at:
        connection.zadd(
            timers_key(queue_name), {str(clock_id): score_of(at) for clock_id, at in fire_at.items()}, lt=True
        )


def disarm(connection: Redis, queue_name: str, clock_ids: Iterable[int]) -> None:
    """Remove the timers of these clocks (a clock that stopped, or whose next step is far off)."""
    members = [str(clock_id) for clock_id in clock_ids]
    if members:
        connection.zrem(timers_key(queue_name), *members)


def claim_due(
    connection: Redis, queue_name: str, now: float, limit: int, lease_s: float = LEASE_S
) -> tuple[list[int], float]:
    """Atomically take up to ``limit`` clocks due at ``now`` (epoch seconds) under a new lease.

    Returns the clock ids and the lease score that :func:`settle` needs.
    """
    lease = round(now + lease_s, 3)
    members = connection.eval(_CLAIM, 1, timers_key(queue_name), repr(now), repr(lease), int(limit))
    return [int(member) for member in members], lease


def settle(connection: Redis, queue_name: str, lease: float, fire_at: Mapping[int, datetime | None]) -> int:
    """After a job fired its clocks: re-arm each at its new instant, or drop it when None, unless
    its timer was moved meanwhile (its score is no longer ``lease``). Returns how many settled."""
    if not fire_at:
        return 0
    args: list[str] = [repr(lease)]
    for clock_id, at in fire_at.items():
        args += [str(clock_id), "" if at is None else repr(score_of(at))]
    return int(connection.eval(_SETTLE, 1, timers_key(queue_name), *args))


def apply_timer_changes(runtime: Runtime, changes: list[TimerChange]) -> None:
    """Arm the timers of clocks whose ``next_fire_at`` moved into the arming horizon (one due
    already fires at once), and remove those of clocks that stopped or moved beyond it.

    Redis being down is not an error here: the reconciler arms every timer the database needs
    once Redis is back.
    """
    if not changes:
        return
    horizon = runtime.now() + timedelta(seconds=runtime.settings.arm_horizon_s)
    near = {c.clock_id: c.fire_at for c in changes if c.fire_at is not None and c.fire_at <= horizon}
    try:
        disarm(runtime.redis, runtime.queue_name, [c.clock_id for c in changes if c.clock_id not in near])
        arm(runtime.redis, runtime.queue_name, near)
    except RedisError as exc:
        log.warning("timers not armed, the reconciler will retry", extra={"error": type(exc).__name__})


def armed_at(connection: Redis, queue_name: str, clock_ids: list[int]) -> dict[int, float]:
    """The scores of those of ``clock_ids`` that are armed (or leased)."""
    if not clock_ids:
        return {}
    scores = connection.zmscore(timers_key(queue_name), [str(clock_id) for clock_id in clock_ids])
    return {clock_id: score for clock_id, score in zip(clock_ids, scores, strict=True) if score is not None}


def next_due(connection: Redis, queue_name: str) -> float | None:
    """Epoch seconds of the earliest armed timer, or None when none is armed."""
    first = connection.zrange(timers_key(queue_name), 0, 0, withscores=True)
    return first[0][1] if first else None


def count_armed(connection: Redis, queue_name: str) -> int:
    return int(connection.zcard(timers_key(queue_name)))


def set_aside_count(connection: Redis, queue_name: str) -> int:
    """How many clocks are set aside because their firing kept failing."""
    return int(connection.zcount(timers_key(queue_name), score_of(SET_ASIDE_AT), "+inf"))


def mark_firing(connection: Redis, queue_name: str, firer: str, until: float) -> None:
    """Say that ``firer`` is firing a batch of clocks (until it unmarks, or ``until`` at most)."""
    connection.zadd(FIRING_KEY.format(queue=queue_name), {firer: until})


def unmark_firing(connection: Redis, queue_name: str, firer: str) -> None:
    connection.zrem(FIRING_KEY.format(queue=queue_name), firer)


def timer_work_waiting(connection: Redis, queue_name: str, now: float) -> bool:
    """True while timers are due or being fired, or timer jobs are queued or running: the
    moment for everything else (applying a backlog of events) to step aside."""
    timer_queue = timer_queue_name(queue_name)
    pipe = connection.pipeline(transaction=False)
    pipe.zcount(timers_key(queue_name), "-inf", now)
    pipe.zcount(FIRING_KEY.format(queue=queue_name), now, "+inf")
    pipe.llen(Queue.redis_queue_namespace_prefix + timer_queue)
    pipe.zcount(StartedJobRegistry.key_template.format(timer_queue), now, "+inf")
    return any(pipe.execute())


def wait_for_timers(runtime: Runtime, most_s: float) -> float:
    """Block while timer work is waiting anywhere (due, being fired, queued or running), up to
    ``most_s``; return the seconds waited. What calls this steps aside for timers."""
    started = time.monotonic()
    while time.monotonic() - started < most_s:
        if not timer_work_waiting(runtime.redis, runtime.queue_name, time.time()):
            break
        time.sleep(0.005)
    return time.monotonic() - started


def armed(connection: Redis, job_ids: list[str]) -> set[str]:
    """Which of the RQ ``job_ids`` exist in Redis (scheduled, queued or running)."""
    from rq.job import Job

    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(Job.key_for(job_id))
    return {job_id for job_id, present in zip(job_ids, pipe.execute(), strict=True) if present}
