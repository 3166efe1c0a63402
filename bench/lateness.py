"""Alert-lateness phase: probe clocks falling due in one short window, among many open clocks,
while a bulk of new leads is being ingested and applied.

``sla-guard serve`` and two ``sla-guard worker`` processes run on a fresh PostgreSQL database
with one 24/7 rule whose breach goes to the benchmark's :class:`~bench.receiver.AlertReceiver`.
First ``open_clocks`` open clocks due 20–60 minutes later are written by SQL (the leads a busy
team has open). Then the probe ``lead.created`` events are posted in signed batches; their
``occurred_at`` put the deadlines uniformly over ``window_s`` seconds starting ``lead_s``
seconds after the first post, late enough that every probe clock is armed before the first one
fires. Shortly before the window opens, ``bulk`` more creations (deadlines well after the
window) are posted as fast as the senders go, so the workers have a backlog of events to apply
while the probes fall due: timers must not wait behind it.

Measured: the time to process the probes, the backlog during the window, Redis memory per open
clock, and for every probe alert its lateness (arrival at the receiver minus ``due_at``),
duplicates and early arrivals.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from statistics import median

import requests
from sqlalchemy import create_engine, text

from sla_guard.redis_server import free_port
from sla_guard.security import SIGNATURE_HEADER, sign

from .context import Bench
from .receiver import AlertReceiver, Receipt
from .services import Processes, clean_queue, redis_flushes, reset_database
from .stats import summary
from .supervisor import Supervisor

PROGRESS_SQL = text("""
    SELECT (SELECT count(*) FROM events WHERE processed_at IS NULL) AS unprocessed,
           (SELECT count(*) FROM clocks WHERE stopped_at IS NULL AND next_fire_at IS NOT NULL) AS open_clocks
""")


@dataclass
class LatenessSettings:
    clocks: int = 3_000
    """Probe clocks: their deadlines fall in the window."""
    open_clocks: int = 100_000
    """Open clocks written in bulk before the probes, due 20–60 minutes later."""
    bulk: int = 50_000
    """Creations posted while the probes fall due (the backlog)."""
    bulk_threads: int = 2
    window_s: float = 60.0
    lead_s: float | None = None
    """Seconds from the first post to the first deadline; None: enough for the creations to be processed."""
    batch: int = 100
    workers: int = 2
    web_workers: int = 4
    reconcile_interval_s: float = 5.0
    post_threads: int = 4
    drain_s: float = 60.0
    """Longest wait for missing alerts after the last deadline."""

    def resolved_lead_s(self) -> float:
        # Two workers on a 2-core machine process a few hundred creations a second; leave margin.
        return self.lead_s if self.lead_s is not None else 20.0 + self.clocks / 50.0

    def within_s(self) -> int:
        """The first-touch budget: 2 minutes, or longer so that no ``occurred_at`` is in the future."""
        return max(120, 60 * math.ceil((self.resolved_lead_s() + self.window_s + 30) / 60))


def created_event(bench: Bench, index: int, occurred_at: float, kind: str = "L") -> dict:
    at = datetime.fromtimestamp(occurred_at, UTC).isoformat().replace("+00:00", "Z")
    return {
        "event_id": f"late-{kind}{bench.run_id}-{index}",
        "type": "lead.created",
        "occurred_at": at,
        "lead": {
            "id": f"{kind}{bench.run_id}-{index}",
            "name": f"Lead {index}",
            "source": "website",
            "owner": "anna",
            "priority": "hot",
        },
    }


def post_batches(bench: Bench, url: str, batches: list[list[dict]], threads: int) -> int:
    """POST each batch as one signed array; return how many events were accepted."""

    def post(batch: list[dict]) -> int:
        body = json.dumps(batch, separators=(",", ":")).encode()
        response = requests.post(
            url,
            data=body,
            timeout=60,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(bench.secret, body, int(time.time()))},
        )
        if response.status_code != 202:
            raise RuntimeError(f"creation batch refused: {response.status_code} {response.text[:200]}")
        return len(response.json()["accepted"])

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(post, batches))


def used_memory(redis) -> int:
    return int(redis.info("memory")["used_memory"])


def timer_memory(redis, queue: str) -> dict:
    """The armed timers (sla-guard's sorted set) and the scheduled RQ jobs of the queue, and what
    they take key by key (``MEMORY USAGE``).

    This account does not move when other clients use the same Redis, unlike ``used_memory``.
    """
    from sla_guard.ingest.processing import timers_key

    registry = f"rq:scheduled:{queue}"
    job_ids = [member.decode() for member in redis.zrange(registry, 0, -1)]
    pipe = redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.memory_usage(f"rq:job:{job_id}")
    sizes = [size or 0 for size in pipe.execute()] if job_ids else []
    registry_bytes = redis.memory_usage(registry) or 0
    timer_set_bytes = redis.memory_usage(timers_key(queue), samples=0) or 0
    return {
        "timers_armed": redis.zcard(timers_key(queue)),
        "timer_set_bytes": timer_set_bytes,
        "timers_scheduled": len(job_ids),
        "job_key_bytes": median(sizes) if sizes else None,
        "registry_bytes": registry_bytes,
        "timer_keys_bytes": sum(sizes) + registry_bytes + timer_set_bytes,
    }


def lateness_stats(receipts: list[Receipt], intended: dict[str, float], first_due: float, window_s: float) -> dict:
    """Lateness of the first arrival of each lead's breach alert; duplicates and early arrivals.

    ``intended`` maps each lead to the deadline the benchmark chose for it: the alert's own
    ``due_at`` must match it (sla-guard counted the 24/7 budget from ``occurred_at``).
    """
    expected = len(intended)
    first: dict[str, Receipt] = {}
    breaches = [r for r in receipts if r.kind == "first_touch.breach"]
    for receipt in sorted(breaches, key=lambda r: r.received):
        first.setdefault(receipt.lead_id, receipt)
    late = [r.received - r.due_at for r in first.values()]
    last_arrival = max((r.received for r in first.values()), default=first_due)
    parts: list[list[float]] = [[] for _ in range(6)]
    for receipt in first.values():
        part = min(5, max(0, int((receipt.due_at - first_due) / window_s * 6)))
        parts[part].append(receipt.received - receipt.due_at)
    buckets = [
        {"from_s": window_s * part / 6, "to_s": window_s * (part + 1) / 6, **summary(values)}
        for part, values in enumerate(parts)
    ]
    return {
        "expected": expected,
        "received": len(first),
        "receipts": len(receipts),
        "duplicates": len(breaches) - len(first),
        "other_kinds": len(receipts) - len(breaches),
        "early": sum(1 for value in late if value < 0),
        "due_at_max_deviation_s": max(
            (abs(r.due_at - intended[r.lead_id]) for r in first.values() if r.lead_id in intended), default=None
        ),
        "unexpected_leads": sum(1 for lead_id in first if lead_id not in intended),
        "lateness_s": summary(late),
        "fire_delay_s": summary([r.fired_at - r.due_at for r in first.values() if r.fired_at]),
        "delivery_s": summary([r.received - r.fired_at for r in first.values() if r.fired_at]),
        "by_deadline": buckets,
        "demand_per_s": expected / window_s,
        "delivered_per_s": len(first) / max(last_arrival - first_due, 1e-9),
    }


def wait_until_armed(engine, redis, queue: str, clocks: int, give_up_at: float) -> dict:
    """Poll until every creation is processed: no event left unprocessed, every clock open with a
    next firing time, and no processing job queued or running (a job arms its timers before it
    ends). Gives up at ``give_up_at`` (the first deadline)."""
    from sla_guard.ingest.processing import timers_key

    state = {}
    while time.time() < give_up_at:
        with engine.connect() as connection:
            row = connection.execute(PROGRESS_SQL).one()
        state = {
            "unprocessed": row.unprocessed,
            "open_clocks": row.open_clocks,
            "queued": redis.llen(f"rq:queue:{queue}"),
            "running": redis.zcard(f"rq:wip:{queue}"),
            "timers": redis.zcard(timers_key(queue)),
        }
        idle = state["unprocessed"] == 0 and not state["queued"] and not state["running"]
        if idle and state["open_clocks"] >= clocks:
            return {**state, "armed": True, "at": time.time()}
        time.sleep(0.5)
    return {**state, "armed": False, "at": time.time()}


def wait_for_alerts(receiver: AlertReceiver, expected: int, last_due: float, drain_s: float) -> None:
    """Until every lead's alert arrived, or nothing arrived for 30 s after the last deadline,
    or ``drain_s`` after it."""
    seen, quiet_since = -1, time.time()
    while time.time() < last_due + drain_s:
        leads = {r.lead_id for r in receiver.receipts}
        if len(leads) >= expected:
            return
        if len(receiver.receipts) != seen:
            seen, quiet_since = len(receiver.receipts), time.time()
        elif time.time() > last_due + 30 and time.time() - quiet_since > 30:
            return
        time.sleep(0.5)


def worker_report(processes: Processes, supervisor: Supervisor, names: list[str], started: float) -> dict:
    """Each worker's exits during the phase (seconds after the first post, exit code) and what it
    logged when it quit; restarted workers are counted, not hidden."""
    report = {}
    for name in names:
        said = [_message(line) for line in processes.lines_with(name, "quitting")]
        report[name] = {
            "exits": [
                {"after_s": round(exit.at - started, 1), "code": exit.code}
                for exit in supervisor.exits
                if exit.name == name
            ],
            "quit_messages": sorted(set(said)),
            "running_at_end": processes.exit_code(name) is None,
        }
    return report


def _message(line: str) -> str:
    """The message of a JSON log line, without the worker's random name."""
    try:
        message = json.loads(line).get("message", line)
    except ValueError:
        message = line
    return re.sub(r"Worker [0-9a-f]{32}", "Worker <name>", str(message)).strip()


def start_stack(processes: Processes, port: int, settings: LatenessSettings) -> list[str]:
    """``sla-guard serve`` and the workers, ready; returns the workers' names."""
    processes.run_cli("db", "upgrade")
    processes.sla_guard(
        "alerts-serve", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(settings.web_workers)
    )
    names = [f"alerts-worker-{number}" for number in range(1, settings.workers + 1)]
    for name in names:
        processes.sla_guard(name, "worker")
    processes.wait_http("alerts-serve", f"http://127.0.0.1:{port}/readyz")
    for name in names:
        processes.wait_log(name, "worker started")
    return names


def backlog(engine) -> int:
    """Accepted events not yet applied."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM events WHERE processed_at IS NULL")).scalar()


class BulkSender(threading.Thread):
    """Posts the bulk creations (deadlines after the window) as fast as ``threads`` senders go."""

    def __init__(self, bench: Bench, url: str, settings: LatenessSettings, within_s: int):
        super().__init__(name="bulk-sender", daemon=True)
        self.bench, self.url, self.settings, self.within_s = bench, url, settings, within_s
        self.accepted = 0
        self.started_at = self.finished_at = None
        self.error: str | None = None

    def run(self) -> None:
        self.started_at = time.time()
        batches = [
            [
                created_event(self.bench, index, time.time(), kind="B")
                for index in range(start, min(start + self.settings.batch, self.settings.bulk))
            ]
            for start in range(0, self.settings.bulk, self.settings.batch)
        ]
        try:
            self.accepted = post_batches(self.bench, self.url, batches, self.settings.bulk_threads)
        except Exception as exc:  # reported, never hidden
            self.error = f"{type(exc).__name__}: {exc}"
        self.finished_at = time.time()


def run_lateness(bench: Bench, settings: LatenessSettings) -> dict:
    from sla_guard.core.rules.loading import load_rules_file

    from .reconciler import fill

    queue = bench.queue("alerts")
    lead_s, within_s = settings.resolved_lead_s(), settings.within_s()
    reset_database(bench.pg_admin_url, bench.db_name)
    redis = bench.redis()
    engine = create_engine(bench.db_url)
    with AlertReceiver() as receiver:
        rules_path = bench.write_rules("alerts", within_s)
        env = bench.env(
            queue,
            rules_path,
            SINK_URL=receiver.url,
            SLA_GUARD_RECONCILE_INTERVAL_S=str(settings.reconcile_interval_s),
        )
        processes = Processes(env, bench.out_dir / "logs", bench.repo)
        port = free_port()
        supervisor = None
        bulk = None
        try:
            processes.run_cli("db", "upgrade")
            print(f"lateness: writing {settings.open_clocks:,} open clocks due in 20-60 minutes ...", file=sys.stderr)
            version = load_rules_file(str(rules_path)).version
            fill_s = fill(engine, settings.open_clocks, 2400.0, version, start_s=1200.0, prefix="O-")
            workers = start_stack(processes, port, settings)
            supervisor = Supervisor(processes, workers).start()
            time.sleep(2)
            flushes_before = redis_flushes(redis)
            memory_before = used_memory(redis)

            started = time.time()
            first_due = started + lead_s
            dues = [first_due + settings.window_s * index / settings.clocks for index in range(settings.clocks)]
            events = [created_event(bench, index, due - within_s) for index, due in enumerate(dues)]
            intended = {event["lead"]["id"]: due for event, due in zip(events, dues, strict=True)}
            random.Random(bench.run_id).shuffle(events)
            batches = [events[i : i + settings.batch] for i in range(0, len(events), settings.batch)]
            print(
                f"lateness: posting {settings.clocks} probe creations, first deadline in {lead_s:.0f} s ...",
                file=sys.stderr,
            )
            url = f"http://127.0.0.1:{port}/webhooks/generic"
            accepted = post_batches(bench, url, batches, settings.post_threads)
            posted = time.time()
            armed = wait_until_armed(engine, redis, queue, settings.clocks + settings.open_clocks, first_due)
            memory_after = used_memory(redis)
            flushes_armed = redis_flushes(redis)
            timers = timer_memory(redis, queue)
            print(
                f"  processed and armed {armed['at'] - started:.1f} s after the first post "
                f"(before the first deadline: {armed['armed']}); {settings.bulk:,} bulk creations from "
                f"5 s before it, then waiting for the alerts ...",
                file=sys.stderr,
            )
            time.sleep(max(0.0, first_due - 5 - time.time()))
            bulk = BulkSender(bench, url, settings, within_s)
            bulk.start()
            time.sleep(max(0.0, first_due - time.time()))
            backlog_samples = [(time.time() - first_due, backlog(engine))]
            while time.time() < dues[-1]:
                time.sleep(min(settings.window_s / 6, max(0.0, dues[-1] - time.time())))
                backlog_samples.append((time.time() - first_due, backlog(engine)))
            wait_for_alerts(receiver, settings.clocks, dues[-1], settings.drain_s)
            time.sleep(settings.reconcile_interval_s + 2)  # more timer and reconciler passes: repeats would show
            supervisor.stop()
            bulk.join(timeout=60)
            with engine.connect() as connection:
                alert_rows = dict(connection.execute(text("SELECT status, count(*) FROM alerts GROUP BY status")).all())
                open_clocks_end = connection.execute(
                    text("SELECT count(*) FROM clocks WHERE stopped_at IS NULL AND next_fire_at IS NOT NULL")
                ).scalar()
            timers_end = timer_memory(redis, queue)
            receipts = [r for r in receiver.receipts if r.lead_id in intended]
            worker_state = worker_report(processes, supervisor, workers, started)
            flushes = {
                "while_arming": flushes_armed - flushes_before,
                "while_firing": redis_flushes(redis) - flushes_armed,
            }
        finally:
            if supervisor is not None:
                supervisor.stop()
            processes.close()
            engine.dispose()
            clean_queue(redis, queue)
            redis.close()
    open_clocks = armed["open_clocks"]
    return {
        "settings": {**asdict(settings), "lead_s": lead_s, "within_s": within_s},
        "fill_s": fill_s,
        "accepted": accepted,
        "posting_s": posted - started,
        "processing_s": armed["at"] - started,
        "armed_before_first_deadline": armed["armed"],
        "progress_at_first_deadline": None if armed["armed"] else armed,
        "bulk": {
            "accepted": bulk.accepted,
            "error": bulk.error,
            "posting_s": (bulk.finished_at or time.time()) - bulk.started_at,
            "backlog": backlog_samples,
        },
        "memory": {
            "before": memory_before,
            "after": memory_after,
            "delta": memory_after - memory_before,
            "open_clocks": open_clocks,
            "per_open_clock": (memory_after - memory_before) / open_clocks if open_clocks else None,
            **timers,
            "open_clocks_end": open_clocks_end,
            "timers_armed_end": timers_end["timers_armed"],
            "timer_set_bytes_end": timers_end["timer_set_bytes"],
        },
        "alerts_in_db": alert_rows,
        "workers": worker_state,
        "redis_flushes_by_others": flushes,
        **lateness_stats(receipts, intended, first_due, settings.window_s),
    }
