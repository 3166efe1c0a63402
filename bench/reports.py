"""``python -m bench reports``: every report over 1,000,000 leads (about 5 million events) in PostgreSQL.

The data is made inside PostgreSQL (``INSERT … SELECT`` over ``generate_series``, seeded with
``setseed`` so a run is reproducible): leads over the last 365 days from four sources, forty
managers in four teams, first-touch clocks, stage stays along the ``b2b`` pipeline, won and lost
leads with reasons, repeat customers, monthly spend, and five inbox events per lead. Events are
loaded with the inbox's indexes dropped and rebuilt after.

The reports are asked over HTTP of a real ``sla-guard serve`` (one gunicorn worker), as the
dashboard asks them: each with the default window (30 days) and a year, without and with
filters. The same is done at 100,000 leads first: the ratio of the web worker's peak memory at
1M to that at 100k says whether memory grows with the data (it must not).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

from .services import base_env, drop_database, free_port, reset_database

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-reports-token-0123456789"
MARK_BEGIN, MARK_END = "<!-- reports benchmark: begin -->", "<!-- reports benchmark: end -->"
RULES = """timezone: Europe/Moscow
pipelines:
  b2b: [new, qualification, proposal, negotiation]
rules:
  - name: all
    first_touch: {within: 15m}
"""
CASES = [
    ("sla", "by=owner"),
    ("sla", "by=week"),
    ("speed", ""),
    ("funnel", "pipeline=b2b"),
    ("losses", "by=reason"),
    ("marketing", ""),
]
FILTER = "team=t1&source=ads"

LEADS_SQL = """
INSERT INTO leads (lead_id, name, source, pipeline, stage, owner, team, priority, amount, url, status, known,
                   created_at, first_touch_at, closed_at, outcome, reason, rule_name, rule_version,
                   last_event_at, updated_at, customer)
SELECT 'B-' || g, 'Lead ' || g, (ARRAY['website','ads','referral','exhibition'])[1 + g % 4], 'b2b',
       CASE WHEN status = 'won' THEN 'negotiation' ELSE (ARRAY['new','qualification','proposal','negotiation'])[1 + k] END,
       'm' || (g % 40), 't' || (g % 40 / 10), CASE WHEN g % 3 = 0 THEN 'hot' ELSE 'normal' END,
       round((1000 + r2 * 300000)::numeric, -2), 'https://crm.example/leads/' || g, status, true,
       created, CASE WHEN r1 < 0.9 THEN created + (r1 * r1 * 20000) * interval '1 second' END,
       CASE WHEN status <> 'open' THEN created + (5 + r2 * 10) * interval '1 day' END,
       CASE WHEN status <> 'open' THEN status END,
       CASE WHEN status = 'lost' THEN (ARRAY['price','no_budget','competitor','no_answer',NULL])[1 + g % 5] END,
       'all', 'bench', created, CAST(:now AS timestamptz), CASE WHEN g % 3 = 0 THEN 'c' || (g % 50000) END
FROM (
  SELECT g, r1, r2, k, CAST(:now AS timestamptz) - (r3 * 365) * interval '1 day' AS created,
         CASE WHEN r4 < 0.3 THEN 'won' WHEN r4 < 0.6 THEN 'lost' ELSE 'open' END AS status
  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4, floor(random() * 4)::int AS k
        FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g) AS dice
) AS lead
"""

CLOCKS_SQL = """
INSERT INTO clocks (lead_id, name, cycle, rule_name, rule_version, started_at, due_at, stopped_at, stop_reason,
                    budget_used_s)
SELECT l.lead_id, 'first_touch', 0, 'all', 'bench', l.created_at, l.created_at + interval '15 minutes',
       COALESCE(l.first_touch_at, l.closed_at),
       CASE WHEN l.first_touch_at IS NOT NULL THEN 'touched' WHEN l.closed_at IS NOT NULL THEN 'closed' END, 0
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g JOIN leads l ON l.lead_id = 'B-' || g
"""

STAYS_SQL = """
INSERT INTO stage_stays (lead_id, seq, stage, entered_at, left_at, left_how, next_stage)
SELECT l.lead_id, s, p[s + 1], l.created_at + s * interval '1 day',
       CASE WHEN s < k THEN l.created_at + (s + 1) * interval '1 day' WHEN l.status <> 'open' THEN l.closed_at END,
       CASE WHEN s < k THEN 'moved' WHEN l.status <> 'open' THEN l.status END,
       CASE WHEN s < k THEN p[s + 2] END
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
JOIN leads l ON l.lead_id = 'B-' || g
CROSS JOIN LATERAL (SELECT ARRAY['new','qualification','proposal','negotiation'] AS p,
                           array_position(ARRAY['new','qualification','proposal','negotiation'], l.stage) - 1 AS k) AS o
CROSS JOIN LATERAL generate_series(0, o.k) AS s
"""

EVENTS_SQL = """
INSERT INTO events (source, event_id, lead_id, type, occurred_at, received_at, payload, processed_at)
SELECT 'generic', l.lead_id || '-' || n, l.lead_id, t, l.created_at + n * interval '1 hour',
       l.created_at + n * interval '1 hour',
       json_build_object('event_id', l.lead_id || '-' || n, 'type', t,
                         'occurred_at', to_char(l.created_at + n * interval '1 hour', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                         'lead', json_build_object('id', l.lead_id, 'source', l.source, 'owner', l.owner))::text,
       :now
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
JOIN leads l ON l.lead_id = 'B-' || g
CROSS JOIN LATERAL (VALUES (0, 'lead.created'), (1, 'lead.touched'), (2, 'lead.stage_changed'),
                           (3, 'lead.stage_changed'), (4, 'lead.closed')) AS e(n, t)
"""

EVENT_INDEXES = {
    "uq_events_source_event_id": "CREATE UNIQUE INDEX uq_events_source_event_id ON events (source, event_id)",
    "ix_events_lead_occurred": "CREATE INDEX ix_events_lead_occurred ON events (lead_id, occurred_at)",
    "ix_events_processed_received": "CREATE INDEX ix_events_processed_received ON events (processed_at, received_at)",
}


def seed(engine, first: int, last: int, now: datetime) -> dict[str, float]:
    """Leads ``first``..``last`` with their clocks, stays and events; seconds per table."""
    took = {}
    params = {"first": first, "last": last, "now": now}
    with engine.begin() as connection:
        connection.execute(text("SELECT setseed(:s)"), {"s": (first % 1000) / 1000})
        for name, sql in (("leads", LEADS_SQL), ("clocks", CLOCKS_SQL), ("stage_stays", STAYS_SQL)):
            began = time.monotonic()
            connection.execute(text(sql), params)
            took[name] = time.monotonic() - began
    began = time.monotonic()
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE events DROP CONSTRAINT IF EXISTS uq_events_source_event_id"))
        for name in EVENT_INDEXES:
            connection.execute(text(f"DROP INDEX IF EXISTS {name}"))
        connection.execute(text(EVENTS_SQL), params)
    with engine.begin() as connection:
        for sql in EVENT_INDEXES.values():
            connection.execute(text(sql))
        connection.execute(
            text(
                "ALTER TABLE events ADD CONSTRAINT uq_events_source_event_id UNIQUE USING INDEX uq_events_source_event_id"
            )
        )
    took["events"] = time.monotonic() - began
    began = time.monotonic()
    with engine.begin() as connection:
        months = [
            row[0] for row in connection.execute(text("SELECT DISTINCT to_char(created_at, 'YYYY-MM') FROM leads"))
        ]
        for month in months:
            for source, amount in (("website", 3e6), ("ads", 4e6), ("referral", 4e5), ("exhibition", 2e6)):
                connection.execute(
                    text(
                        "INSERT INTO spend (month, source, amount, updated_at) VALUES (:m, :s, :a, :now)"
                        " ON CONFLICT (month, source) DO UPDATE SET amount = excluded.amount"
                    ),
                    {"m": month, "s": source, "a": amount, "now": now},
                )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))
    took["spend, vacuum analyze"] = time.monotonic() - began
    return took


class Web:
    """``sla-guard serve`` with one gunicorn worker, whose peak memory we read from /proc."""

    def __init__(self, database_url: str, redis_url: str, folder: Path):
        import subprocess

        rules = folder / "rules.yaml"
        rules.write_text(RULES)
        self.port = free_port()
        env = {
            **base_env(),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SLA_GUARD_RULES": str(rules),
            "SLA_GUARD_API_TOKEN": TOKEN,
            "SLA_GUARD_QUEUE": "bench-reports",
            "SLA_GUARD_LOG_LEVEL": "WARNING",
        }
        self.log = open(folder / f"web-{self.port}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sla_guard.cli", "serve", "--port", str(self.port), "--workers", "1"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("sla-guard serve did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the gunicorn worker (the master's child)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        status = Path(f"/proc/{children[0]}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024

    def get(self, path: str) -> float:
        began = time.monotonic()
        response = requests.get(f"{self.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        took = time.monotonic() - began
        response.raise_for_status()
        return took

    def stop(self) -> None:
        import signal

        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.log.close()


def time_reports(web: Web, now: datetime, runs: int) -> list[dict]:
    year = f"from={(now.replace(year=now.year - 1)).strftime('%Y-%m-%d')}"
    out = []
    for name, args in CASES:
        for window, extra in (("30 days", ""), ("365 days", year)):
            for filtered in (False, True):
                query = "&".join(part for part in (args, extra, FILTER if filtered else "") if part)
                path = f"/api/reports/{name}?{query}"
                web.get(path)  # warm-up: plans and pages cached, as on a dashboard in use
                times = [web.get(path) for _ in range(runs)]
                out.append(
                    {
                        "report": f"{name} {args}".strip(),
                        "window": window,
                        "filters": FILTER if filtered else "none",
                        "median_s": statistics.median(times),
                        "max_s": max(times),
                    }
                )
    return out


def render(results: dict) -> str:
    lines = [
        MARK_BEGIN,
        "## Reports over 1,000,000 leads",
        "",
        f"Run on {results['at']} with `{results['command']}`; PostgreSQL on this machine, reports asked over HTTP "
        "of `sla-guard serve` with one gunicorn worker (JSON), one warm-up then the median and maximum of "
        f"{results['runs']} requests. Goal: under 1 s each; web memory not growing with the leads.",
        "",
        "| data | leads | events | stage stays | seeding |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage in results["stages"]:
        took = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage["seed_s"].items())
        lines.append(f"| {stage['label']} | {stage['leads']:,} | {stage['events']:,} | {stage['stays']:,} | {took} |")
    big = results["stages"][-1]
    lines += [
        "",
        f"Times at {big['leads']:,} leads (filters: `{FILTER}`):",
        "",
        "| report | window | filters | median | max | under 1 s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in big["times"]:
        verdict = "yes" if row["median_s"] < 1 else "**no**"
        lines.append(
            f"| `{row['report']}` | {row['window']} | {row['filters']} | {row['median_s'] * 1000:.0f} ms "
            f"| {row['max_s'] * 1000:.0f} ms | {verdict} |"
        )
    small = results["stages"][0]
    ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    lines += [
        "",
        f"Web worker peak memory (VmHWM): {small['peak_rss_mb']:.0f} MB after every report at {small['leads']:,} leads, "
        f"{big['peak_rss_mb']:.0f} MB at {big['leads']:,} leads: ×{ratio:.2f} for ×{big['leads'] / small['leads']:.0f} "
        "the data (aggregates are computed in the database; only result rows reach the web process).",
        "",
        f"Slowest median at {small['leads']:,} leads: "
        f"{max(r['median_s'] for r in small['times']) * 1000:.0f} ms; "
        f"at {big['leads']:,}: {max(r['median_s'] for r in big['times']) * 1000:.0f} ms.",
        MARK_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put the section into RESULTS.md, replacing an earlier one; the rest of the file is kept."""
    current = path.read_text() if path.exists() else ""
    if MARK_BEGIN in current and MARK_END in current:
        before, rest = current.split(MARK_BEGIN, 1)
        after = rest.split(MARK_END, 1)[1].lstrip("\n")
        current = before + section + after
    else:
        current = current.rstrip("\n") + "\n\n" + section
    path.write_text(current)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reports", description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000, help="leads of the first, smaller measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-name", default="sla_guard_bench_reports")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)
    from sla_guard.store.migrate import upgrade

    now = datetime.now(UTC).replace(microsecond=0)
    url = reset_database(args.pg, args.db_name)
    upgrade(url)
    engine = create_engine(url)
    results = {"at": now.strftime("%Y-%m-%d %H:%M UTC"), "runs": args.runs, "stages": []}
    results["command"] = " ".join(["python -m bench reports", *argv])
    folder = Path(tempfile.mkdtemp(prefix="sla-guard-bench-reports-"))
    try:
        done = 0
        for label, target in (("baseline", args.baseline), ("full", args.leads)):
            print(f"seeding leads {done + 1:,}..{target:,}", file=sys.stderr)
            took = seed(engine, done + 1, target, now)
            done = target
            with engine.connect() as connection:
                counts = {
                    table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("leads", "events", "stage_stays")
                }
            web = Web(url, args.redis, folder)
            try:
                print(f"timing every report at {target:,} leads", file=sys.stderr)
                times = time_reports(web, now, args.runs)
                peak = web.peak_rss_mb()
            finally:
                web.stop()
            results["stages"].append(
                {
                    "label": label,
                    "leads": counts["leads"],
                    "events": counts["events"],
                    "stays": counts["stage_stays"],
                    "seed_s": took,
                    "times": times,
                    "peak_rss_mb": peak,
                }
            )
    finally:
        engine.dispose()
        if not args.keep_db:
            drop_database(args.pg, args.db_name)
    section = render(results)
    write_section(args.output, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
