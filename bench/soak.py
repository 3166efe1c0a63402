"""Soak: ten minutes of mixed CRM traffic at half the measured capacity, with faults.

``python -m bench soak`` (or ``python -m bench.soak``) starts ``sla-guard serve``, one
``sla-guard worker`` (restarted when it exits, as compose does), an alert receiver and a Redis
server of its own (never the shared one: the soak restarts it), on a PostgreSQL database of its
own. It first measures the capacity of this mix for a few seconds (as fast as the senders go, and
how fast the worker applies what was accepted), then sends the same mix at half the smaller of
the two rates for the soak's duration: generic events, amoCRM
forms, HubSpot batches and Pipedrive deals; half of the generic leads are touched in time. In the
middle Redis is restarted (its data gone) and the worker is killed with ``-9``.

It reports requests accepted and refused, events stored and applied, escalations recorded and
alerts received, duplicates, p99 time to answer, and the memory (RSS) of every process at the
start and at the end of the soak, and appends the report to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import sys
import threading
import time
from base64 import b64encode
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import requests
from sqlalchemy import create_engine, text

from sla_guard.ingest.adapters import hubspot
from sla_guard.redis_server import RedisServer, free_port
from sla_guard.security import SIGNATURE_HEADER, sign

from .context import Bench
from .receiver import AlertReceiver
from .services import Processes, drop_database, reset_database
from .stats import summary
from .supervisor import Supervisor

REPO = Path(__file__).resolve().parents[1]
AMO_TOKEN, AMO_ACCOUNT = "soak-amo-token", "30307558"
HUBSPOT_SECRET = "soak-hubspot-secret"
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "soak", "soak-password"


@dataclass
class SoakSettings:
    duration_s: float = 600.0
    probe_s: float = 15.0
    share: float = 0.5
    senders: int = 8
    within_s: int = 20
    web_workers: int = 2
    redis_restart_at: float = 0.4
    worker_kill_at: float = 0.65
    drain_s: float = 120.0


# --- traffic ----------------------------------------------------------------------------------


class Traffic:
    """The mixed requests, lead by lead: each builder returns ``(path, headers, body)``."""

    def __init__(self, base_url: str, secret: str, run_id: str):
        self.base_url = base_url
        self.secret = secret
        self.run_id = run_id
        self.counter = itertools.count(1)

    def next_requests(self) -> list[tuple[str, dict, bytes]]:
        """The requests of one new lead (its creation, and for every other lead a touch)."""
        number = next(self.counter)
        kind = ("generic", "amocrm", "hubspot", "pipedrive")[number % 4]
        requests_ = [getattr(self, kind)(number)]
        if kind == "generic" and (number // 4) % 2 == 0:
            requests_.append(self.generic_touch(f"generic-{self.run_id}-{number}"))
        return requests_

    def _signed(self, payload) -> tuple[str, dict, bytes]:
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body, int(time.time()))}
        return "/webhooks/generic", headers, body

    def generic(self, number: int) -> tuple[str, dict, bytes]:
        lead_id = f"generic-{self.run_id}-{number}"
        return self._signed(
            {
                "event_id": f"{lead_id}-created",
                "type": "lead.created",
                "occurred_at": datetime.now(UTC).isoformat(),
                "lead": {"id": lead_id, "source": "website", "owner": "anna", "name": f"Soak lead {number}"},
            }
        )

    def generic_touch(self, lead_id: str) -> tuple[str, dict, bytes]:
        return self._signed(
            {
                "event_id": f"{lead_id}-touch",
                "type": "lead.touched",
                "occurred_at": datetime.now(UTC).isoformat(),
                "lead": {"id": lead_id},
                "touch": {"channel": "call", "by": "anna"},
            }
        )

    def amocrm(self, number: int) -> tuple[str, dict, bytes]:
        lead_id, now = 10_000_000 + number, int(time.time())
        fields = {
            "id": lead_id,
            "name": f"Soak lead {number}",
            "status_id": 67548607,
            "price": 1000,
            "responsible_user_id": 11087123,
            "pipeline_id": 8572511,
            "account_id": AMO_ACCOUNT,
            "created_at": now,
            "updated_at": now,
        }
        pairs = [(f"leads[add][0][{key}]", value) for key, value in fields.items()]
        pairs += [("account[subdomain]", "soak"), ("account[id]", AMO_ACCOUNT)]
        body = "&".join(f"{quote(key)}={quote(str(value))}" for key, value in pairs).encode()
        return f"/webhooks/amocrm/{AMO_TOKEN}", {"Content-Type": "application/x-www-form-urlencoded"}, body

    def hubspot(self, number: int) -> tuple[str, dict, bytes]:
        now_ms = int(time.time() * 1000)
        payload = [
            {
                "eventId": 900_000_000 + number,
                "subscriptionId": 22,
                "portalId": 62515,
                "appId": 54321,
                "occurredAt": now_ms,
                "subscriptionType": "contact.creation",
                "attemptNumber": 0,
                "objectId": 50_000_000 + number,
                "changeFlag": "CREATED",
                "changeSource": "FORM",
            }
        ]
        body = json.dumps(payload).encode()
        stamp = str(now_ms)
        url = self.base_url + "/webhooks/hubspot"
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-Version": "v3",
            "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-v3": hubspot.signature(HUBSPOT_SECRET, "POST", url, body, stamp),
        }
        return "/webhooks/hubspot", headers, body

    def pipedrive(self, number: int) -> tuple[str, dict, bytes]:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        payload = {
            "data": {"id": number, "title": f"Soak deal {number}", "owner_id": 12415231, "status": "open"},
            "previous": None,
            "meta": {
                "action": "create",
                "entity": "deal",
                "entity_id": str(number),
                "id": f"soak-{self.run_id}-{number}",
            }
            | {"timestamp": now, "version": "2.0"},
        }
        auth = "Basic " + b64encode(f"{PIPEDRIVE_USER}:{PIPEDRIVE_PASSWORD}".encode()).decode()
        return (
            "/webhooks/pipedrive",
            {"Content-Type": "application/json", "Authorization": auth},
            json.dumps(payload).encode(),
        )


class Senders:
    """``count`` threads sending the requests put on :attr:`work`, recording status and time."""

    def __init__(self, base_url: str, count: int):
        self.base_url = base_url
        self.work: queue.Queue = queue.Queue(maxsize=count * 4)
        self.statuses: Counter[str] = Counter()
        self.latencies_ms: list[float] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while True:
            item = self.work.get()
            if item is None:
                return
            path, headers, body = item
            began = time.perf_counter()
            try:
                status = str(session.post(self.base_url + path, data=body, headers=headers, timeout=10).status_code)
            except requests.RequestException as exc:
                status = type(exc).__name__
            self.latencies_ms.append((time.perf_counter() - began) * 1000)
            self.statuses[status] += 1

    def stop(self) -> None:
        for _ in self._threads:
            self.work.put(None)
        for thread in self._threads:
            thread.join(timeout=15)


def drive(traffic: Traffic, senders: Senders, seconds: float, rate: float | None, faults: dict) -> int:
    """Send leads for ``seconds``, at ``rate`` leads a second (None: as fast as they go);
    ``faults`` maps a name to ``(seconds after the start, what to do then)``."""
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < seconds:
        for name, (at, inject) in list(faults.items()):
            if elapsed >= at:
                faults.pop(name)
                inject()
        if rate is not None:
            wait = started + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.05))
                continue
        for request in traffic.next_requests():
            senders.work.put(request)
        sent += 1
    return sent


# --- measures --------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(processes: Processes, redis_server: RedisServer) -> dict[str, int]:
    """RSS (kB) of every process: each sla-guard process and the children of its group."""
    out: dict[str, int] = {}
    groups = {name: process.pid for name, process in processes.running.items()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pgid = int(fields[2])
        for name, leader in groups.items():
            if pgid == leader:
                role = "leader" if int(entry.name) == leader else f"child-{entry.name}"
                out[f"{name} {role}"] = rss_kb(int(entry.name))
    if redis_server.process is not None:
        out["redis-server"] = rss_kb(redis_server.process.pid)
    return out


def database_counts(engine) -> dict:
    with engine.connect() as connection:
        query = connection.execute
        return {
            "events": query(text("SELECT count(*) FROM events")).scalar(),
            "events_applied": query(text("SELECT count(*) FROM events WHERE processed_at IS NOT NULL")).scalar(),
            "leads": query(text("SELECT count(*) FROM leads")).scalar(),
            "escalations": query(text("SELECT count(*) FROM escalations")).scalar(),
            "alerts": dict(query(text("SELECT status, count(*) FROM alerts GROUP BY status")).all()),
            "quarantined": query(text("SELECT count(*) FROM quarantined_leads")).scalar(),
        }


def run_soak(bench: Bench, settings: SoakSettings) -> dict:
    queue_name = bench.queue("soak")
    reset_database(bench.pg_admin_url, bench.db_name)
    redis_server = RedisServer(bench.out_dir / "soak-redis")
    redis_server.start()
    engine = create_engine(bench.db_url)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with AlertReceiver() as receiver:
        env = bench.env(
            queue_name,
            bench.write_rules("soak", settings.within_s),
            SINK_URL=receiver.url,
            REDIS_URL=redis_server.url,
            SLA_GUARD_RECONCILE_INTERVAL_S="2",
            SLA_GUARD_AMOCRM_TOKEN=AMO_TOKEN,
            SLA_GUARD_AMOCRM_ACCOUNT_ID=AMO_ACCOUNT,
            SLA_GUARD_HUBSPOT_CLIENT_SECRET=HUBSPOT_SECRET,
            SLA_GUARD_HUBSPOT_PUBLIC_URL=base_url + "/webhooks/hubspot",
            SLA_GUARD_PIPEDRIVE_USER=PIPEDRIVE_USER,
            SLA_GUARD_PIPEDRIVE_PASSWORD=PIPEDRIVE_PASSWORD,
        )
        processes = Processes(env, bench.out_dir / "soak-logs", bench.repo)
        supervisor = None
        faults: list[str] = []
        try:
            processes.run_cli("db", "upgrade")
            processes.sla_guard(
                "serve", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(settings.web_workers)
            )
            processes.sla_guard("worker", "worker")
            processes.wait_http("serve", base_url + "/readyz")
            processes.wait_log("worker", "worker started")
            supervisor = Supervisor(processes, ["worker"]).start()
            traffic = Traffic(base_url, bench.secret, bench.run_id)

            probe = Senders(base_url, settings.senders)
            probe_began = time.monotonic()
            probe_leads = drive(traffic, probe, settings.probe_s, None, {})
            probe.stop()
            capacity = sum(probe.statuses.values()) / settings.probe_s
            web_leads_per_s = probe_leads / settings.probe_s
            give_up = time.monotonic() + settings.drain_s
            while time.monotonic() < give_up:  # the worker's side: how fast the probe's leads are applied
                counts = database_counts(engine)
                if counts["events_applied"] >= counts["events"]:
                    break
                time.sleep(0.5)
            applied_leads_per_s = probe_leads / (time.monotonic() - probe_began)
            rate = settings.share * min(web_leads_per_s, applied_leads_per_s)
            print(
                f"soak: web {web_leads_per_s:.0f} leads/s, applied {applied_leads_per_s:.0f} leads/s; "
                f"soaking at {rate:.1f} leads/s",
                file=sys.stderr,
            )
            time.sleep(settings.within_s + 5)  # the probe's leads settle before the start is measured
            rss_start = process_tree(processes, redis_server)

            def restart_redis() -> None:
                faults.append(f"{time.strftime('%H:%M:%S')} Redis stopped")
                redis_server.stop()
                time.sleep(3)
                redis_server.start()
                faults.append(f"{time.strftime('%H:%M:%S')} Redis started again (empty)")

            def kill_worker() -> None:
                os.killpg(processes.running["worker"].pid, 9)
                faults.append(f"{time.strftime('%H:%M:%S')} worker killed with -9 (restarted by the supervisor)")

            senders = Senders(base_url, settings.senders)
            began = time.time()
            soaked = drive(
                traffic,
                senders,
                settings.duration_s,
                rate,
                {
                    "redis": (settings.duration_s * settings.redis_restart_at, restart_redis),
                    "worker": (settings.duration_s * settings.worker_kill_at, kill_worker),
                },
            )
            senders.stop()
            sent_s = time.time() - began
            rss_end = process_tree(processes, redis_server)
            time.sleep(settings.within_s + 5)  # the last leads' deadlines pass
            deadline = time.time() + settings.drain_s
            while time.time() < deadline:
                counts = database_counts(engine)
                delivered = counts["alerts"].get("delivered", 0)
                if counts["events_applied"] == counts["events"] and delivered >= counts["escalations"]:
                    break
                time.sleep(2)
            time.sleep(5)  # more timer and reconciler passes: repeats would show
            counts = database_counts(engine)
            supervisor.stop()
            receipts = list(receiver.receipts)
        finally:
            if supervisor is not None:
                supervisor.stop()
            processes.close()
            engine.dispose()
            redis_server.stop()
    distinct = Counter((receipt.lead_id, receipt.kind, receipt.level) for receipt in receipts)
    statuses = senders.statuses + probe.statuses
    return {
        "settings": asdict(settings),
        "capacity_requests_per_s": capacity,
        "capacity_web_leads_per_s": web_leads_per_s,
        "capacity_applied_leads_per_s": applied_leads_per_s,
        "rate_leads_per_s": rate,
        "leads_sent": probe_leads + soaked,
        "sending_s": sent_s,
        "requests": dict(statuses),
        "accepted": statuses.get("202", 0),
        "latency_ms": summary(senders.latencies_ms),
        "database": counts,
        "alerts_received": len(receipts),
        "alerts_distinct": len(distinct),
        "duplicates": sum(count - 1 for count in distinct.values()),
        "faults": faults,
        "worker_exits": len(supervisor.exits) if supervisor else None,
        "rss_kb_start": rss_start,
        "rss_kb_end": rss_end,
    }


def render(result: dict, command: str) -> str:
    db = result["database"]
    lat = result["latency_ms"]
    lines = [
        "",
        f"## Soak: mixed CRM traffic with faults ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{command}`)",
        "",
        f"Capacity of the mix measured first ({result['settings']['probe_s']:.0f} s as fast as "
        f"{result['settings']['senders']} senders go): {result['capacity_requests_per_s']:.0f} requests/s answered, "
        f"{result['capacity_web_leads_per_s']:.0f} leads/s accepted, {result['capacity_applied_leads_per_s']:.0f} "
        "leads/s applied by the worker; soaked at half the smaller: "
        f"{result['rate_leads_per_s']:.1f} leads/s for {result['sending_s']:.0f} s (generic, amoCRM, HubSpot, "
        "Pipedrive in turn; half of the generic leads touched in time). One `sla-guard worker`, "
        f"`serve --workers {result['settings']['web_workers']}`, PostgreSQL, a Redis of the soak's own.",
        "",
        "| measure | result |",
        "| --- | --- |",
        f"| leads sent | {result['leads_sent']} |",
        f"| requests answered, by status | {', '.join(f'{k}: {v}' for k, v in sorted(result['requests'].items()))} |",
        f"| events stored · applied | {db['events']} · {db['events_applied']} |",
        f"| escalations recorded · alerts delivered | {db['escalations']} · {db['alerts']} |",
        f"| alerts received · distinct · duplicates | {result['alerts_received']} · {result['alerts_distinct']} · "
        f"{result['duplicates']} |",
        f"| quarantined leads | {db['quarantined']} |",
        f"| time to answer p50 / p99 / max | {lat['p50']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms |",
        f"| worker exits (restarted) | {result['worker_exits']} |",
        "",
        "Faults: " + "; ".join(result["faults"]) + ".",
        "",
        "| process | RSS at start | RSS at end | growth |",
        "| --- | --- | --- | --- |",
    ]
    for name in sorted(set(result["rss_kb_start"]) | set(result["rss_kb_end"])):
        start, end = result["rss_kb_start"].get(name), result["rss_kb_end"].get(name)
        growth = f"{(end - start) / start:+.0%}" if start and end else "restarted"
        lines.append(f"| {name} | {start or '–'} kB | {end or '–'} kB | {growth} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of soak (default 600)")
    parser.add_argument("--probe", type=float, default=15.0, help="seconds measuring capacity (default 15)")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-name", default="sla_guard_soak")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    bench = Bench(repo=REPO, pg_admin_url=args.pg, db_name=args.db_name, redis_url="redis://127.0.0.1:9/0")
    bench.out_dir.mkdir(parents=True)
    settings = SoakSettings(duration_s=args.duration, probe_s=args.probe)
    try:
        result = run_soak(bench, settings)
    finally:
        drop_database(bench.pg_admin_url, bench.db_name)
    (bench.out_dir / "soak.json").write_text(json.dumps(result, indent=2, default=str))
    report = render(result, " ".join(["python -m bench soak", *(argv or [])]))
    with open(args.output, "a") as handle:
        handle.write(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
