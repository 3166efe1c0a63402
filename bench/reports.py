"""``python -m bench reports``: every report over 1,000,000 leads (about 5 million events) in PostgreSQL.

The data is made inside PostgreSQL, set-based (``bench/reports_seed.py``). The reports are asked
over HTTP of a real ``sla-guard serve`` (one gunicorn worker), as the dashboard asks them: each
with the default window (30 days) and a year, without filters, with ``team`` and ``source``, and
with ``owner``. The same is done at 100,000 leads first (a database of its own): the ratio of the
web worker's peak memory at 1M to that at 100k says whether memory grows with the data (it must
not).

``--reuse`` keeps the seeded databases and uses them again when they hold the asked number of
leads; ``--explain DIR`` writes ``EXPLAIN (ANALYZE, BUFFERS)`` of every query of every case
(each filter on its own as well) into DIR instead of timing over HTTP.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import create_engine, event, text

from sla_guard.redis_server import free_port

from .reports_seed import RULES, seed, seeded
from .services import base_env, drop_database, reset_database

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-reports-token-0123456789"
MARK_BEGIN, MARK_END = "<!-- reports benchmark: begin -->", "<!-- reports benchmark: end -->"
CASES = [
    ("sla", "by=owner"),
    ("sla", "by=week"),
    ("speed", ""),
    ("funnel", "pipeline=b2b"),
    ("losses", "by=reason"),
    ("marketing", ""),
]
FILTERS = ("team=t1&source=ads", "owner=m7")
"""Filter sets timed besides none."""

EXPLAIN_FILTERS = ("team=t1", "source=ads", "owner=m7", "pipeline=smb", "team=t1&source=ads")


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


def _year(now: datetime) -> str:
    return f"from={(now - timedelta(days=365)).strftime('%Y-%m-%d')}"


def cases(now: datetime, filter_sets: tuple[str, ...]):
    """``(report, args, window, filters, query string)`` of every timed request."""
    for name, args in CASES:
        for window, extra in (("30 days", ""), ("365 days", _year(now))):
            for filters in ("", *filter_sets):
                query = "&".join(part for part in (args, extra, filters) if part)
                yield name, args, window, filters or "none", query


def time_reports(web: Web, now: datetime, runs: int, only: str | None = None) -> list[dict]:
    out = []
    for name, args, window, filters, query in cases(now, FILTERS):
        if only and only != name:
            continue
        path = f"/api/reports/{name}?{query}"
        web.get(path)  # warm-up: plans and pages cached, as on a dashboard in use
        times = [web.get(path) for _ in range(runs)]
        out.append(
            {
                "report": f"{name} {args}".strip(),
                "window": window,
                "filters": filters,
                "median_s": statistics.median(times),
                "max_s": max(times),
            }
        )
        print(f"{name} {query}: {statistics.median(times) * 1000:.0f} ms", file=sys.stderr)
    return out


def explain_reports(url: str, now: datetime, folder: Path, only: str | None = None) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement each case runs, one file per case, plus a summary."""
    from urllib.parse import parse_qsl

    from sla_guard.core.rules.loading import load_rules_file
    from sla_guard.reports import parse_query, run_report

    folder.mkdir(parents=True, exist_ok=True)
    rules_path = folder / "rules.yaml"
    rules_path.write_text(RULES)
    rules = load_rules_file(str(rules_path))
    engine = create_engine(url)
    captured: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    summary = []
    try:
        for name, args, window, filters, query in cases(now, EXPLAIN_FILTERS):
            if only and only != name:
                continue
            params = dict(parse_qsl(query))
            report_query = parse_query(params, datetime.now(UTC), rules.spec.timezone)
            captured.clear()
            with engine.connect() as connection:
                began = time.monotonic()
                run_report(name, connection, report_query, params, rules)
                took = time.monotonic() - began
                statements = list(captured)
                plans = []
                for statement, parameters in statements:
                    plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).all()
                    plans.append(statement + "\n\n" + "\n".join(row[0] for row in plan))
                connection.rollback()
            slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{name}_{args}_{window}_{filters}").strip("_")
            (folder / f"{slug}.txt").write_text("\n\n----\n\n".join(plans))
            line = f"{took * 1000:8.0f} ms  {name} {args} | {window} | {filters} | {len(statements)} queries"
            summary.append(line)
            print(line, file=sys.stderr)
    finally:
        engine.dispose()
    (folder / "summary.txt").write_text("\n".join(summary) + "\n")


def render(results: dict) -> str:
    lines = [
        MARK_BEGIN,
        "## Reports over 1,000,000 leads",
        "",
        f"Run on {results['at']} with `{results['command']}`; PostgreSQL on this machine, reports asked over HTTP "
        "of `sla-guard serve` with one gunicorn worker (JSON), one warm-up then the median and maximum of "
        f"{results['runs']} requests. Goal: under 1 s each; web memory not growing with the leads. Load average "
        f"(1/5/15 min) before: {_load(results['load_before'])}, after: {_load(results['load_after'])}.",
        "",
        "| data | leads | events | stage stays | seeding |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage in results["stages"]:
        took = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stage["seed_s"].items()) or "reused"
        lines.append(f"| {stage['label']} | {stage['leads']:,} | {stage['events']:,} | {stage['stays']:,} | {took} |")
    big = results["stages"][-1]
    lines += [
        "",
        f"Times at {big['leads']:,} leads:",
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


def _load(values) -> str:
    return " / ".join(f"{value:.1f}" for value in values)


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


def prepare(admin_url: str, name: str, leads: int, reuse: bool) -> tuple[str, dict, datetime]:
    """The URL of database ``name`` holding ``leads`` seeded leads: reused when asked and it does,
    else made afresh; with the seconds each part of seeding took ({} when reused) and its ``now``."""
    from sla_guard.store.migrate import current, upgrade

    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    if reuse:
        try:
            engine = create_engine(url)
            found = seeded(engine)
        except Exception:  # noqa: BLE001 -- no such database yet
            found = None
        else:
            if found and found[0] == leads:
                before = current(url)
                upgrade(url)  # a newer schema (indexes, stored facts) applies to the kept data
                # a migration that rewrote rows leaves their old versions behind: compact the
                # tables as a fresh seed would be (the README's upgrade note), else just analyze
                maintenance = "VACUUM (FULL, ANALYZE)" if current(url) != before else "ANALYZE"
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.execute(text(maintenance))
                engine.dispose()
                print(f"reusing {name}: {leads:,} leads seeded at {found[1]:%Y-%m-%d %H:%M}", file=sys.stderr)
                return url, {}, found[1]
            engine.dispose()
    now = datetime.now(UTC).replace(microsecond=0)
    url = reset_database(admin_url, name)
    upgrade(url)
    engine = create_engine(url)
    try:
        print(f"seeding {leads:,} leads into {name}", file=sys.stderr)
        took = seed(engine, leads, now)
    finally:
        engine.dispose()
    return url, took, now


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench reports", description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000, help="leads of the first, smaller measurement")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--db-name", default="sla_guard_bench_reports")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded databases and reuse them when they fit")
    parser.add_argument("--explain", type=Path, metavar="DIR", help="write query plans at --leads to DIR, time nothing")
    parser.add_argument(
        "--only",
        choices=[name for name, _ in CASES],
        help="this report only (timed: printed, RESULTS.md left as it is)",
    )
    args = parser.parse_args(argv)

    if args.explain:
        url, _took, now = prepare(args.pg, args.db_name, args.leads, args.reuse)
        try:
            explain_reports(url, now, args.explain, args.only)
        finally:
            if not args.reuse:
                drop_database(args.pg, args.db_name)
        return 0
    results = {"at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "runs": args.runs, "stages": []}
    results["command"] = " ".join(["python -m bench reports", *argv])
    results["load_before"] = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="sla-guard-bench-reports-"))
    made = []
    try:
        for label, target, name in (
            ("baseline", args.baseline, f"{args.db_name}_baseline"),
            ("full", args.leads, args.db_name),
        ):
            url, took, now = prepare(args.pg, name, target, args.reuse)
            made.append(name)
            engine = create_engine(url)
            with engine.connect() as connection:
                counts = {
                    table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("leads", "events", "stage_stays")
                }
            engine.dispose()
            web = Web(url, args.redis, folder)
            try:
                print(f"timing every report at {target:,} leads", file=sys.stderr)
                times = time_reports(web, datetime.now(UTC), args.runs, args.only)
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
        if not args.reuse:
            for name in made:
                drop_database(args.pg, name)
    results["load_after"] = os.getloadavg()
    section = render(results)
    if not args.only:
        write_section(args.output, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
