"""Ingest phase: signed generic webhooks per second, sla-guard on PostgreSQL against a bare Flask app.

Both servers run under gunicorn with the options of ``sla-guard serve`` and the same worker
count, and receive the same sequence of bodies from the same load generator (:mod:`bench.load`,
a separate process). Every body is a distinct valid event (its own ``event_id``, leads spread over
many ids), so each accepted request is one committed inbox row plus its lead handed to the
workers through Redis. sla-guard runs as in production, with one ``sla-guard worker`` applying
the events meanwhile, on PostgreSQL and then on the default SQLite file (WAL). The Redis keys of
the benchmark's queues are removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from sla_guard.redis_server import free_port

from . import cpu
from .context import Bench
from .services import Processes, clean_queue, redis_flushes, reset_database

EVENT_TYPES = ("lead.created", "lead.updated", "lead.touched", "lead.stage_changed", "lead.assigned", "lead.closed")
OWNERS = ("anna", "boris", "olga", "ivan")
SOURCES = ("website", "landing", "phone", "partner")


FIRST_TOUCH_S = 86_400
"""The first-touch budget of the phase's rules. The events happened up to an hour ago (see
:func:`write_bodies`), so a day's budget keeps every deadline beyond the run: the worker applies
events and arms timers, as it does for fresh leads, instead of escalating leads that were overdue
on arrival (alerting is the lateness phase's measure)."""


@dataclass
class IngestSettings:
    web_workers: int = 2
    concurrency: int = 16
    warmup_s: float = 3.0
    duration_s: float = 20.0
    max_requests: int = 120_000
    leads: int = 10_000


def event_body(run_id: str, index: int, leads: int, at: datetime) -> dict:
    """Event number ``index``: lead ``index % leads``, its type following the lead's life."""
    lead_no = index % leads
    lap = index // leads
    kind = EVENT_TYPES[lap] if lap < len(EVENT_TYPES) else "lead.updated"
    owner = OWNERS[lead_no % len(OWNERS)]
    lead = {
        "id": f"B{run_id}-{lead_no}",
        "name": f"Request #{lead_no}",
        "source": SOURCES[lead_no % len(SOURCES)],
        "pipeline": "b2b",
        "stage": "new",
        "owner": owner,
        "team": "inbound",
        "priority": "hot" if lead_no % 3 == 0 else "normal",
        "amount": 1000 + lead_no,
        "url": f"https://crm.example/leads/{lead_no}",
        "tags": ["bench"],
    }
    body = {
        "event_id": f"bench-{run_id}-{index}",
        "type": kind,
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
        "lead": lead,
    }
    if kind == "lead.touched":
        body["touch"] = {"channel": "call", "by": owner}
    elif kind == "lead.stage_changed":
        lead["stage"], body["previous_stage"] = "qualified", "new"
    elif kind == "lead.assigned":
        lead["owner"], body["previous_owner"] = OWNERS[(lead_no + 1) % len(OWNERS)], owner
    elif kind == "lead.closed":
        body["outcome"] = "won" if lead_no % 2 else "lost"
        if body["outcome"] == "lost":
            body["reason"] = "price"
    return body


def write_bodies(path: Path, run_id: str, count: int, leads: int) -> None:
    """``count`` distinct events as JSON Lines (compact JSON, as CRMs send it)."""
    start = datetime.now(UTC) - timedelta(hours=1)
    with path.open("wb") as handle:
        for index in range(count):
            body = event_body(run_id, index, leads, start + timedelta(milliseconds=index))
            handle.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")


def drive(bench: Bench, server: subprocess.Popen, port: int, bodies: Path, settings: IngestSettings, name: str) -> dict:
    """Run the load generator process against ``port``; return its JSON result, with the CPU each
    group of processes used during the measured window (:mod:`bench.cpu`)."""
    out = bench.out_dir / f"load-{name}.json"
    load = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--port",
            str(port),
            "--bodies",
            str(bodies),
            "--secret",
            bench.secret,
            "--concurrency",
            str(settings.concurrency),
            "--warmup",
            str(settings.warmup_s),
            "--duration",
            str(settings.duration_s),
            "--out",
            str(out),
        ],
        cwd=bench.repo,
    )
    try:
        time.sleep(settings.warmup_s + 0.5)
        before = cpu.snapshot()
        time.sleep(settings.duration_s - 1.0)
        after = cpu.snapshot()
        code = load.wait(timeout=settings.warmup_s + settings.duration_s + 120)
    finally:
        if load.poll() is None:
            load.kill()
    if code != 0:
        raise RuntimeError(f"the load generator failed (exit code {code})")
    result = json.loads(out.read_text())
    result["cpu_cores"] = cpu.usage(before, after, os.getpgid(server.pid), load.pid, bench.db_name)
    return result


def run_baseline(bench: Bench, bodies: Path, settings: IngestSettings) -> dict:
    port = free_port()
    processes = Processes(
        bench.env(bench.queue("unused"), bench.write_rules("ingest", FIRST_TOUCH_S)), bench.out_dir / "logs", bench.repo
    )
    try:
        server = processes.start(
            "bare",
            [
                sys.executable,
                "-m",
                "bench.bare_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(settings.web_workers),
            ],
        )
        processes.wait_http("bare", f"http://127.0.0.1:{port}/", ok=(404, 405))
        return drive(bench, server, port, bodies, settings, "bare")
    finally:
        processes.close()


def run_sla_guard(bench: Bench, bodies: Path, settings: IngestSettings, database: str = "postgresql") -> dict:
    """``sla-guard serve`` with one ``sla-guard worker`` applying the events as they come, on
    PostgreSQL or on the default SQLite file; also counts the events applied meanwhile."""
    queue = bench.queue(f"ingest-{database}")
    extra = {}
    if database == "sqlite":
        db_file = bench.out_dir / "ingest.db"
        db_file.unlink(missing_ok=True)
        extra["DATABASE_URL"] = f"sqlite:///{db_file}"
    else:
        reset_database(bench.pg_admin_url, bench.db_name)
    env = bench.env(queue, bench.write_rules("ingest", FIRST_TOUCH_S), **extra)
    processes = Processes(env, bench.out_dir / "logs", bench.repo)
    redis = bench.redis()
    port = free_port()
    db_url = extra.get("DATABASE_URL", bench.db_url)
    try:
        processes.run_cli("db", "upgrade")
        server = processes.sla_guard(
            f"serve-{database}",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(settings.web_workers),
        )
        processes.wait_http(f"serve-{database}", f"http://127.0.0.1:{port}/readyz")
        processes.sla_guard(f"worker-{database}", "worker")
        processes.wait_log(f"worker-{database}", "worker started")
        flushes_before = redis_flushes(redis)
        result = drive(bench, server, port, bodies, settings, f"sla-guard-{database}")
        result["redis_flushes_by_others"] = redis_flushes(redis) - flushes_before
        engine = create_engine(db_url)
        with engine.connect() as connection:
            counts = connection.execute(
                text("SELECT count(*), count(processed_at) FROM events")
            ).one()  # the worker still runs: what it applied by the end of the load
        processes.stop(f"serve-{database}", f"worker-{database}")
        engine.dispose()
        result["database"] = database
        result["events_stored"], result["events_applied"] = counts
        processes.close()
        result["queue_keys_removed"] = clean_queue(redis, queue)
        return result
    finally:
        processes.close()
        clean_queue(redis, queue)
        redis.close()


def run_ingest(bench: Bench, settings: IngestSettings) -> dict:
    """The three targets, baseline first, with the same bodies; returns the results and ratios."""
    bodies = bench.out_dir / "ingest-bodies.jsonl"
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    write_bodies(bodies, bench.run_id, settings.max_requests, settings.leads)
    print("ingest: bare Flask baseline ...", file=sys.stderr)
    bare = run_baseline(bench, bodies, settings)
    print(f"  {bare['rps']:.0f} req/s, p99 {bare['latency_ms']['p99']:.1f} ms", file=sys.stderr)
    print("ingest: sla-guard serve on PostgreSQL, with a worker ...", file=sys.stderr)
    sla = run_sla_guard(bench, bodies, settings, "postgresql")
    print(f"  {sla['rps']:.0f} req/s, p99 {sla['latency_ms']['p99']:.1f} ms", file=sys.stderr)
    print("ingest: sla-guard serve on SQLite (the default), with a worker ...", file=sys.stderr)
    lite = run_sla_guard(bench, bodies, settings, "sqlite")
    print(f"  {lite['rps']:.0f} req/s, p99 {lite['latency_ms']['p99']:.1f} ms", file=sys.stderr)
    bodies.unlink(missing_ok=True)
    rate = bare["accepted_rps"]
    return {
        "settings": asdict(settings),
        "bare": bare,
        "sla_guard": sla,
        "sqlite": lite,
        "ratio": sla["accepted_rps"] / rate if rate else None,
        "sqlite_ratio": lite["accepted_rps"] / rate if rate else None,
    }
