"""Pacing of CRM REST calls, shared in Redis by every worker process.

Each CRM limits the calls of one account (amoCRM: 7 a second; Bitrix24: a bucket of 50 that
drains 2 a second; HubSpot: 100 or 190 per 10 seconds for a private app; Pipedrive: a number
per 2-second window plus a daily token budget). sla-guard runs several workers, so the pace
is kept in Redis, per CRM account, and checked atomically by one Lua script before each call:

- :class:`Window` — at most ``calls`` in any ``seconds``. A call counts from its start until
  it *ends* (plus the window), so calls a slow network delays can never bunch up at the CRM:
  two calls ``calls`` apart always reach it at least ``seconds`` apart;
- :class:`Bucket` — a leaky bucket of ``burst`` calls draining ``rate_per_s`` (the generic
  cell rate algorithm: one timestamp per account);
- :class:`DailyBudget` — ``tokens`` per UTC day, each call costing its weight.

A call that may not go yet waits (polling the script, never longer than the script says);
when the wait would exceed ``max_wait_s`` the call is not made and :class:`PaceDeferred`
says how long to wait, so that the job is retried later instead of holding a worker. A CRM
that answers "too many requests" anyway (a person using the same account, another
integration) pauses the whole account for every worker (:meth:`Pacer.pause`); a 403 that
follows a 429 is amoCRM blocking the account, and :meth:`Pacer.recently_limited` lets the
caller recognise it.

Every call and every wait is counted in Redis per CRM (:func:`pace_stats`), so ``/metrics``
shows the pace of all workers together. Account keys are digests: no token or portal key is
ever written to Redis.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from sla_guard.config import crm_settings
from sla_guard.exceptions import ConfigError, SlaGuardError

MAX_WAIT_S = 20.0
"""Longest a call waits for its turn inside a job (jobs may run 60 s)."""

IN_FLIGHT_S = 60.0
"""How long a call that never reported its end keeps its place in a window."""

POLL_S = 0.05
"""Shortest pause between two checks while a call waits for its turn."""

RATE_LIMITED_MEMORY_S = 600
"""How long after a 429 a 403 of the same account is read as the CRM blocking it."""

STATS_KEY = "pace:stats"


@dataclass(frozen=True)
class Window:
    """At most ``calls`` calls in any ``seconds`` (a call occupies its place until it ends)."""

    calls: int
    seconds: float


@dataclass(frozen=True)
class Bucket:
    """A leaky bucket: bursts of up to ``burst`` calls, refilled at ``rate_per_s``."""

    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class DailyBudget:
    """``tokens`` per UTC day; a call spends its ``cost``."""

    tokens: int


Limit = Window | Bucket | DailyBudget


class PaceDeferred(SlaGuardError):
    """The call would have to wait longer than a job may: try again in ``wait_s`` seconds."""

    def __init__(self, crm: str, wait_s: float):
        self.crm = crm
        self.wait_s = wait_s
        super().__init__(f"{crm}: the account's request budget is used up for now; next call in {wait_s:.1f} s")


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[1]
local in_flight = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local wait = 0
local paused = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
if paused > now then wait = paused - now end
local plans = {}
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind, a, b, cost = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local key = KEYS[i]
  if kind == 'window' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - b)
    if redis.call('ZCARD', key) >= a then
      local nth = redis.call('ZREVRANGE', key, a - 1, a - 1, 'WITHSCORES')
      local ends = tonumber(nth[2])
      local w = ends + b - now
      if ends > now then w = tonumber(ARGV[4 + n * 4]) end
      if w < 1 then w = 1 end
      if w > wait then wait = w end
    end
  elseif kind == 'bucket' then
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local new_tat = tat + a * cost
    local w = new_tat - a * b - now
    if w > wait then wait = w end
    plans[i] = new_tat
  else
    local day = math.floor(now / 86400000)
    local used = 0
    if tonumber(redis.call('HGET', key, 'day') or '-1') == day then
      used = tonumber(redis.call('HGET', key, 'used') or '0')
    end
    if used + cost > a then
      local w = (day + 1) * 86400000 - now
      if w > wait then wait = w end
    end
    plans[i] = {day, used + cost}
  end
end
if wait > 0 then return {0, math.ceil(wait)} end
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind, b = ARGV[base + 1], tonumber(ARGV[base + 3])
  local key = KEYS[i]
  if kind == 'window' then
    redis.call('ZADD', key, now + in_flight, member)
    redis.call('PEXPIRE', key, math.ceil(b + in_flight))
  elseif kind == 'bucket' then
    redis.call('SET', key, plans[i], 'PX', math.ceil(plans[i] - now + 1000))
  else
    redis.call('HSET', key, 'day', plans[i][1], 'used', plans[i][2])
    redis.call('PEXPIRE', key, 172800000)
  end
end
return {1, 0}
"""

_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now, ARGV[1])
end
return now
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local till = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if till > current then redis.call('SET', KEYS[1], till, 'PX', tonumber(ARGV[1]) + 1000) end
return till
"""


def account_key(*parts: str | None) -> str:
    """A short digest naming one CRM account (a portal host, a token): never the secret itself."""
    joined = "\x1f".join(part or "" for part in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:20]


class Pacer:
    """Hands out turns for one CRM account's REST calls, shared by every process using ``redis``.

    ``namespace`` prefixes every key (the queue name: installs sharing a Redis stay apart).
    ``sleep`` and ``max_wait_s`` may be replaced (a job that must not wait uses 0).
    """

    def __init__(
        self,
        redis: Redis,
        namespace: str = "sla-guard",
        *,
        max_wait_s: float = MAX_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.redis = redis
        self.namespace = namespace
        self.max_wait_s = max_wait_s
        self.sleep = sleep
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)

    def _key(self, crm: str, account: str, suffix: str) -> str:
        return f"{self.namespace}:pace:{crm}:{account}:{suffix}"

    @contextmanager
    def turn(self, crm: str, account: str, limits: Sequence[Limit], cost: int = 1) -> Iterator[float]:
        """Wait for the account's next free turn, hold it while the call runs, and report its end.

        Yields the seconds waited. Raises :class:`PaceDeferred` (nothing is sent) when the turn
        is further away than ``max_wait_s``.
        """
        member = uuid.uuid4().hex
        keys = [self._key(crm, account, f"{index}") for index in range(len(limits))]
        keys.append(self._key(crm, account, "paused"))
        args: list = [member, int(IN_FLIGHT_S * 1000), len(limits)]
        for limit in limits:
            args.extend(_encode(limit, cost))
        args.append(int(POLL_S * 1000))
        started = time.monotonic()
        slept = False
        while True:
            granted, wait_ms = self._acquire(keys=keys, args=args)
            if granted:
                break
            wait = wait_ms / 1000
            if time.monotonic() - started + wait > self.max_wait_s:
                self._count(crm, deferred=1)
                raise PaceDeferred(crm, wait)
            self.sleep(max(POLL_S, wait))
            slept = True
        waited = time.monotonic() - started if slept else 0.0
        self._count(crm, calls=1, waits=1 if waited > 0 else 0, wait_seconds=waited)
        windows = [key for key, limit in zip(keys, limits, strict=False) if isinstance(limit, Window)]
        try:
            yield waited
        finally:
            if windows:
                self._release(keys=windows, args=[member])

    def pause(self, crm: str, account: str, seconds: float) -> None:
        """Hold every call of the account, in every worker, for ``seconds`` (the CRM said so)."""
        if seconds > 0:
            self._pause(keys=[self._key(crm, account, "paused")], args=[int(seconds * 1000)])

    def limited(self, crm: str, account: str, seconds: float) -> None:
        """Record that the CRM answered "too many requests" and pause the account ``seconds``."""
        self.redis.set(self._key(crm, account, "limited"), "1", ex=RATE_LIMITED_MEMORY_S)
        self._count(crm, rate_limited=1)
        self.pause(crm, account, seconds)

    def recently_limited(self, crm: str, account: str) -> bool:
        """Whether the CRM answered "too many requests" to this account in the last minutes."""
        return bool(self.redis.exists(self._key(crm, account, "limited")))

    def _count(self, crm: str, **amounts: float) -> None:
        key = f"{self.namespace}:{STATS_KEY}"
        pipe = self.redis.pipeline(transaction=False)
        for name, amount in amounts.items():
            if not amount:
                continue
            if isinstance(amount, float):
                pipe.hincrbyfloat(key, f"{crm}|{name}", amount)
            else:
                pipe.hincrby(key, f"{crm}|{name}", amount)
        pipe.execute()


def _encode(limit: Limit, cost: int) -> list:
    if isinstance(limit, Window):
        return ["window", limit.calls, limit.seconds * 1000, 1]
    if isinstance(limit, Bucket):
        return ["bucket", 1000 / limit.rate_per_s, limit.burst, cost]
    if isinstance(limit, DailyBudget):
        return ["day", limit.tokens, 0, cost]
    raise TypeError(f"not a pace limit: {limit!r}")


STAT_NAMES = ("calls", "waits", "wait_seconds", "deferred", "rate_limited")


def pace_stats(redis: Redis, namespace: str = "sla-guard") -> dict[str, dict[str, float]]:
    """``{crm: {"calls": …, "waits": …, "wait_seconds": …, "deferred": …, "rate_limited": …}}``."""
    raw = redis.hgetall(f"{namespace}:{STATS_KEY}")
    stats: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        crm, _, name = field.decode().partition("|")
        if name in STAT_NAMES:
            stats.setdefault(crm, dict.fromkeys(STAT_NAMES, 0.0))[name] = float(value)
    return stats


# --- the pacer of the HTTP layer ----------------------------------------------------------

BLOCKED_S = 300.0
"""How long every call of an amoCRM account waits after a 403 that follows a 429: amoCRM
blocks an account that keeps going past its limit."""


@dataclass(frozen=True)
class CrmPace:
    """One CRM's limits per account; ``pause_s``: the hold after a "too many requests" naming
    no wait; ``blocked_s``: the hold after a 403 that follows one (0: a 403 is a refusal)."""

    limits: tuple[Limit, ...]
    pause_s: float = 1.0
    blocked_s: float = 0.0


def _whole(values: Mapping[str, Any], key: str, default: int) -> int:
    value = str(values.get(key) or default).strip()
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{key} must be a whole number above 0, not {value[:40]!r}")
    return int(value)


def crm_paces(settings: Any) -> dict[str, CrmPace]:
    """Each CRM's documented limits, with the plan-dependent ones from the settings:
    ``SLA_GUARD_HUBSPOT_CALLS_PER_10S`` (a private app's burst: 100, or 190 on Professional and
    Enterprise, 250 with the limit increase), ``SLA_GUARD_PIPEDRIVE_CALLS_PER_2S`` (20 … 120 by
    plan) and ``SLA_GUARD_PIPEDRIVE_DAILY_TOKENS`` (30,000 × the plan's multiplier × seats)."""
    hubspot, pipedrive = crm_settings(settings, "hubspot"), crm_settings(settings, "pipedrive")
    return {
        "amocrm": CrmPace((Window(7, 1.0),), blocked_s=BLOCKED_S),
        "bitrix24": CrmPace((Bucket(rate_per_s=2, burst=50),)),
        "hubspot": CrmPace((Window(_whole(hubspot, "SLA_GUARD_HUBSPOT_CALLS_PER_10S", 100), 10.0),)),
        "pipedrive": CrmPace(
            (
                Window(_whole(pipedrive, "SLA_GUARD_PIPEDRIVE_CALLS_PER_2S", 20), 2.0),
                DailyBudget(_whole(pipedrive, "SLA_GUARD_PIPEDRIVE_DAILY_TOKENS", 30_000)),
            ),
            pause_s=2.0,
        ),
    }


def _account(account: str) -> str:
    """The digest of an account: a URL's host (the amoCRM account, the Bitrix24 portal, whatever
    the path holds), or the text as given (a digest of a token)."""
    parts = urlsplit(account)
    return account_key(parts.netloc.lower() if parts.scheme and parts.netloc else account)


class CrmPacer:
    """The pacer of the HTTP layer (:func:`sla_guard.outbox.http.install_pacer`): a request to a
    CRM account takes its turn under that CRM's limits (:func:`crm_paces`); other services
    are not paced."""

    def __init__(self, pacer: Pacer, paces: Mapping[str, CrmPace]):
        self.pacer = pacer
        self.paces = dict(paces)

    def turn(self, service: str, account: str, cost: int = 1):
        crm = service.lower()
        pace = self.paces.get(crm)
        if pace is None:
            return nullcontext()
        return self.pacer.turn(crm, _account(account), pace.limits, cost)

    def rate_limited(self, service: str, account: str, wait_s: float | None) -> None:
        crm = service.lower()
        pace = self.paces.get(crm)
        if pace is not None:
            self.pacer.limited(crm, _account(account), wait_s or pace.pause_s)

    def refused(self, service: str, account: str) -> float | None:
        crm = service.lower()
        pace = self.paces.get(crm)
        if pace is None or not pace.blocked_s or not self.pacer.recently_limited(crm, _account(account)):
            return None
        self.pacer.pause(crm, _account(account), pace.blocked_s)
        return pace.blocked_s


def crm_pacer(settings: Any) -> CrmPacer:
    """The CRM pacer of a process, on its own Redis connection (``REDIS_URL``), its keys under
    the queue's name."""
    if isinstance(settings, Mapping):
        url, namespace = settings.get("REDIS_URL"), settings.get("SLA_GUARD_QUEUE")
    else:  # the typed settings object
        url, namespace = settings.redis_url, settings.queue
    client = Redis.from_url(url or "redis://127.0.0.1:6379/0", socket_connect_timeout=1, socket_timeout=5)
    return CrmPacer(Pacer(client, str(namespace or "sla-guard")), crm_paces(settings))
