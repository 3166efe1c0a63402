"""Reconciler phase: one pass over a database holding 1,000,000 open clocks.

A fresh PostgreSQL database gets ``clocks`` leads with one open first-touch clock each, written
in bulk by SQL (``generate_series``), their ``next_fire_at`` spread uniformly over the next
``spread_s`` seconds, all computed under the rules version in force (as after a normal start).
Then the real :func:`sla_guard.timers.reconciler.reconcile` runs in this process against the
benchmark's own Redis queue, several times: the first pass arms every timer inside the arming
horizon (Redis starts empty), the later ones find everything in place, which is the steady
state a worker sees every ``SLA_GUARD_RECONCILE_INTERVAL_S``. Each pass is timed, and the
queries it runs are counted with their time (SQLAlchemy's cursor events).
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass

from sqlalchemy import create_engine, event, text

from .context import Bench
from .services import Processes, clean_queue, reset_database

FILL_SQL = [
    """INSERT INTO leads (lead_id, source, owner, status, known, created_at, rule_name, rule_version,
                          last_event_at, updated_at)
       SELECT :prefix || n, 'website', 'anna', 'open', true, now(), 'bench first touch', :version, now(), now()
       FROM generate_series(1, :clocks) AS n""",
    """INSERT INTO clocks (lead_id, name, cycle, rule_name, rule_version, started_at, due_at,
                           budget_used_s, next_fire_at)
       SELECT :prefix || n, 'first_touch', 0, 'bench first touch', :version, now(),
              now() + make_interval(secs => :start + :spread * n / :clocks),
              0, now() + make_interval(secs => :start + :spread * n / :clocks)
       FROM generate_series(1, :clocks) AS n""",
    "ANALYZE leads",
    "ANALYZE clocks",
]
"""Open clocks written in bulk: lead ``<prefix><n>``, next firing ``start`` to ``start + spread``
seconds from now, computed under rules ``version`` of the benchmark's rule."""


@dataclass
class ReconcilerSettings:
    clocks: int = 1_000_000
    spread_s: float = 7200.0
    """Seconds over which the open clocks' next firing times are spread (from now)."""
    passes: int = 3


def fill(engine, clocks: int, spread_s: float, version: str, start_s: float = 0.0, prefix: str = "R-") -> float:
    """Write ``clocks`` open clocks in bulk (see :data:`FILL_SQL`); return the seconds it took."""
    began = time.monotonic()
    values = {"clocks": clocks, "spread": spread_s, "version": version, "start": start_s, "prefix": prefix}
    with engine.begin() as connection:
        for statement in FILL_SQL:
            connection.execute(text(statement), values)
    return time.monotonic() - began


def run_reconciler(bench: Bench, settings: ReconcilerSettings) -> dict:
    from sla_guard.config import load_settings
    from sla_guard.ingest import processing as arming
    from sla_guard.runtime import RulesHolder, Runtime
    from sla_guard.timers.reconciler import reconcile

    queue = bench.queue("reconciler")
    reset_database(bench.pg_admin_url, bench.db_name)
    rules_path = bench.write_rules("reconciler", 3600)
    env = bench.env(queue, rules_path)
    Processes(env, bench.out_dir / "logs", bench.repo).run_cli("db", "upgrade")
    settings_ = load_settings(
        env={}, overrides={k: v for k, v in env.items() if k.startswith(("SLA_", "DATABASE", "REDIS"))}
    )
    runtime = Runtime.from_settings(settings_, rules=RulesHolder(str(rules_path)))
    redis = bench.redis()
    engine = create_engine(bench.db_url)
    print(f"reconciler: writing {settings.clocks:,} open clocks ...", file=sys.stderr)
    try:
        fill_s = fill(engine, settings.clocks, settings.spread_s, runtime.rules.current().version)
        runtime.record_rules()
        queries: dict[str, list[float]] = defaultdict(list)

        @event.listens_for(runtime.db.engine, "before_cursor_execute")
        def _before(conn, cursor, statement, parameters, context, executemany):
            conn.info["bench_started"] = time.perf_counter()

        @event.listens_for(runtime.db.engine, "after_cursor_execute")
        def _after(conn, cursor, statement, parameters, context, executemany):
            queries[" ".join(statement.split())[:90]].append(time.perf_counter() - conn.info.pop("bench_started"))

        passes = []
        for number in range(settings.passes):
            queries.clear()
            began = time.perf_counter()
            report = reconcile(runtime)
            took = time.perf_counter() - began
            top = sorted(((sum(times), len(times), sql) for sql, times in queries.items()), reverse=True)[:5]
            passes.append(
                {
                    "pass": number + 1,
                    "seconds": took,
                    "timers_armed": report.timers_armed,
                    "timers_fired": report.timers_fired,
                    "events_applied": report.events_applied,
                    "leads_recomputed": report.leads_recomputed,
                    "sql_seconds": sum(sum(times) for times in queries.values()),
                    "queries": sum(len(times) for times in queries.values()),
                    "slowest": [{"sql": sql, "count": count, "seconds": total} for total, count, sql in top],
                }
            )
            print(f"  pass {number + 1}: {took:.2f} s, {report.timers_armed:,} timers armed", file=sys.stderr)
        armed = arming.count_armed(redis, queue)
        timer_bytes = redis.memory_usage(arming.timers_key(queue), samples=0) or 0
    finally:
        runtime.db.dispose()
        engine.dispose()
        clean_queue(redis, queue)
        redis.close()
    return {
        "settings": asdict(settings),
        "horizon_s": settings_.arm_horizon_s,
        "fill_s": fill_s,
        "passes": passes,
        "armed": armed,
        "timer_set_bytes": timer_bytes,
        "bytes_per_armed_clock": timer_bytes / armed if armed else None,
        "bytes_per_open_clock": timer_bytes / settings.clocks,
    }


def render_reconciler(result: dict) -> list[str]:
    settings = result["settings"]
    lines = [
        "## Reconciler: one pass over many open clocks",
        "",
        f"{settings['clocks']:,} leads with one open clock each, written by SQL into a fresh PostgreSQL database "
        f"in {result['fill_s']:.1f} s, `next_fire_at` spread uniformly over the next {settings['spread_s']:,.0f} s; "
        f"arming horizon {result['horizon_s']} s. The real `reconcile()` runs {settings['passes']} times in a row "
        "against an empty timer set: the first pass arms the timers inside the horizon, the next ones are the "
        "steady state of every `SLA_GUARD_RECONCILE_INTERVAL_S`.",
        "",
        "| pass | seconds | timers armed | SQL queries | SQL seconds | costliest query (total s, count) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for one in result["passes"]:
        top = one["slowest"][0] if one["slowest"] else None
        costliest = f"`{top['sql']}` ({top['seconds']:.2f}, {top['count']})" if top else "–"
        lines.append(
            f"| {one['pass']} | {one['seconds']:.2f} | {one['timers_armed']:,} | {one['queries']} | "
            f"{one['sql_seconds']:.2f} | {costliest} |"
        )
    lines += [
        "",
        f"- Timers armed in Redis at the end: {result['armed']:,}; the sorted set takes {result['timer_set_bytes']:,} B "
        f"(`MEMORY USAGE`): {result['bytes_per_armed_clock'] or 0:.0f} B per armed clock, "
        f"{result['bytes_per_open_clock']:.1f} B per open clock.",
        "",
    ]
    return lines
