"""``python -m bench``: run the ingest and alert-lateness benchmarks, print and save the report.

Everything runs on this machine: PostgreSQL and Redis must listen on 127.0.0.1, every process
the benchmark starts binds to 127.0.0.1, and every phase is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from .context import Bench
from .ingest import IngestSettings, run_ingest
from .lateness import LatenessSettings, run_lateness
from .machine import machine_facts
from .reconciler import ReconcilerSettings, run_reconciler
from .report import render
from .services import drop_database

REPO = Path(__file__).resolve().parents[1]
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
KEEP_RUNS = 3
"""Runs whose logs stay in ``bench/out/``, this one included."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run sla-guard's ingest and alert-lateness benchmarks on this machine."
    )
    parser.add_argument("--quick", action="store_true", help="short run: 1,000 clocks over 20 s, 5 s of ingest")
    parser.add_argument("--only", choices=("ingest", "lateness", "reconciler"), help="run one phase only")
    ingest = parser.add_argument_group("ingest")
    ingest.add_argument("--duration", type=float, help="measured seconds per target (default 20; quick 5)")
    ingest.add_argument("--warmup", type=float, help="warm-up seconds per target, not counted (default 3; quick 2)")
    ingest.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    ingest.add_argument(
        "--web-workers",
        type=int,
        default=2,
        help="gunicorn workers of both targets (default 2, sla-guard's SLA_GUARD_WEB_WORKERS default)",
    )
    ingest.add_argument(
        "--max-requests", type=int, default=120_000, help="bodies prepared per target (default 120,000)"
    )
    late = parser.add_argument_group("alert lateness")
    late.add_argument("--clocks", type=int, help="probe clocks falling due in the window (default 3,000; quick 500)")
    late.add_argument(
        "--open-clocks", type=int, help="open clocks due later, written by SQL (default 100,000; quick 10,000)"
    )
    late.add_argument(
        "--bulk", type=int, help="creations posted while the probes fall due (default 50,000; quick 5,000)"
    )
    late.add_argument("--window", type=float, help="seconds the deadlines are spread over (default 60; quick 20)")
    late.add_argument(
        "--lead",
        type=float,
        help="seconds from the first creation to the first deadline (default: enough to process the creations first)",
    )
    late.add_argument("--workers", type=int, default=2, help="sla-guard worker processes (default 2)")
    recon = parser.add_argument_group("reconciler")
    recon.add_argument(
        "--reconciler-clocks", type=int, help="open clocks for the reconciler pass (default 1,000,000; quick 100,000)"
    )
    where = parser.add_argument_group("servers")
    where.add_argument(
        "--pg",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL maintenance database URL, used to create and drop the benchmark's database",
    )
    where.add_argument("--db-name", default="sla_guard_bench")
    where.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    where.add_argument("--keep-db", action="store_true", help="leave the benchmark database for inspection")
    where.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    for url in (args.pg, args.redis):
        if urlsplit(url).hostname not in LOCAL_HOSTS:
            parser.error(f"{url}: the benchmark only talks to servers on this machine (127.0.0.1)")
    return args


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m bench", *argv])


def prune_old_runs(out: Path, keep: int) -> None:
    """Delete the logs of all but the ``keep`` most recent runs (a concurrent run's are recent)."""
    runs = sorted((path for path in out.glob("*") if path.is_dir()), key=lambda path: path.stat().st_mtime)
    for path in runs[: max(0, len(runs) - keep)]:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def single_run(db_name: str) -> Iterator[None]:
    """An exclusive lock per benchmark database: a second run would drop the first one's database."""
    with open(Path(tempfile.gettempdir()) / f"sla-guard-bench-{db_name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"another benchmark run is using the database {db_name}; wait for it to end") from None
        yield


def run(args: argparse.Namespace, argv: list[str]) -> str:
    """Both phases (or the one chosen); returns the Markdown report."""
    began = time.monotonic()
    prune_old_runs(REPO / "bench" / "out", keep=KEEP_RUNS - 1)
    bench = Bench(repo=REPO, pg_admin_url=args.pg, db_name=args.db_name, redis_url=args.redis)
    bench.out_dir.mkdir(parents=True)
    facts = machine_facts(bench)
    ingest_settings = IngestSettings(
        web_workers=args.web_workers,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
        warmup_s=args.warmup if args.warmup is not None else (2.0 if args.quick else 3.0),
        duration_s=args.duration if args.duration is not None else (5.0 if args.quick else 20.0),
    )
    lateness_settings = LatenessSettings(
        clocks=args.clocks or (500 if args.quick else 3_000),
        open_clocks=args.open_clocks if args.open_clocks is not None else (10_000 if args.quick else 100_000),
        bulk=args.bulk if args.bulk is not None else (5_000 if args.quick else 50_000),
        window_s=args.window or (20.0 if args.quick else 60.0),
        lead_s=args.lead,
        workers=args.workers,
        web_workers=args.web_workers,
    )
    print(f"sla-guard benchmark, run {bench.run_id}; logs in {bench.out_dir.relative_to(REPO)}", file=sys.stderr)
    reconciler_settings = ReconcilerSettings(clocks=args.reconciler_clocks or (100_000 if args.quick else 1_000_000))
    ingest = lateness = reconciler = None
    try:
        if args.only in (None, "ingest"):
            ingest = run_ingest(bench, ingest_settings)
        if args.only in (None, "lateness"):
            lateness = run_lateness(bench, lateness_settings)
        if args.only in (None, "reconciler"):
            reconciler = run_reconciler(bench, reconciler_settings)
    finally:
        if not args.keep_db:
            drop_database(bench.pg_admin_url, bench.db_name)
    (bench.out_dir / "results.json").write_text(
        json.dumps(
            {"facts": facts, "ingest": ingest, "lateness": lateness, "reconciler": reconciler}, indent=2, default=str
        )
    )
    return render(bench, facts, command_line(argv), ingest, lateness, time.monotonic() - began, reconciler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["reports"]:  # the 1M-lead report benchmark (bench/reports.py)
        from .reports import main as reports_main

        return reports_main(argv[1:])
    if argv[:1] == ["soak"]:  # the ten-minute soak with faults (bench/soak.py)
        from .soak import main as soak_main

        return soak_main(argv[1:])
    args = parse_args(argv)
    with single_run(args.db_name):
        report = run(args, argv)
    args.output.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
