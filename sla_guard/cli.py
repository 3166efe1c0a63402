"""The ``sla-guard`` command: serve, worker, dev, rules check/explain, db upgrade, quarantine."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import click

from sla_guard.preflight import fail, rules_or_fail, schema_or_fail, settings_or_fail


@click.group()
@click.version_option(package_name="sla-guard")
def main():
    """sla-guard: SLA clocks, escalations and follow-ups for your CRM's leads."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int, help="gunicorn worker processes [SLA_GUARD_WEB_WORKERS]")
def serve(host: str, port: int, workers: int | None):
    """Run the web app (webhooks, API, metrics) under gunicorn."""
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="sla-guard-metrics-"))
    settings = settings_or_fail()
    rules_or_fail(settings.rules_path)
    schema_or_fail(settings.database_url)
    from sla_guard.web.server import run_gunicorn

    run_gunicorn(host, port, workers or settings.web_workers, settings.web_threads)


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def worker(burst: bool):
    """Run a worker: jobs, the timer scheduler and the reconciler."""
    # The worker process lives in the top-level ``workers`` package, which imports sla_guard (never
    # the reverse) and makes the start-up checks: this process becomes it at once, keeping its pid
    # for signals and supervisors, and nothing is imported twice.
    os.execv(sys.executable, [sys.executable, "-m", "workers", *(["--burst"] if burst else [])])


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Seed a month of demo leads and a dashboard user first.")
def dev(host: str, port: int, demo: bool):
    """Web and worker in one command, for trying sla-guard out (SQLite, local Redis)."""
    from sla_guard.devserver import run_dev

    run_dev(host, port, demo=demo)


@main.group()
def rules():
    """Check and explain rules files."""


@rules.command("check")
@click.argument("file", required=False)
def rules_check(file: str | None):
    """Validate a rules file (default: SLA_GUARD_RULES); exit 0 when valid."""
    from sla_guard.core.rules.lint import lint

    path = file or os.environ.get("SLA_GUARD_RULES", "config/sla.yaml")
    ruleset = rules_or_fail(path)
    warnings = lint(ruleset)
    for where, message in warnings:
        click.echo(f"warning: {where}: {message}")
    click.echo(
        f"{path}: OK, {len(ruleset.rules)} rules, version {ruleset.version}"
        + (f", {len(warnings)} warnings" if warnings else "")
    )


@rules.command("explain")
@click.argument("file")
@click.argument("event_file")
def rules_explain(file: str, event_file: str):
    """Which rule matches the lead in EVENT_FILE (one event or an array) and its deadlines."""
    from sla_guard.core.events import parse_events
    from sla_guard.core.explain import explain
    from sla_guard.exceptions import InvalidEvent

    ruleset = rules_or_fail(file)
    try:
        with open(event_file, encoding="utf-8") as handle:
            events = parse_events(json.load(handle))
    except (OSError, ValueError) as exc:
        fail(f"cannot read {event_file}: {exc}")
    except InvalidEvent as exc:
        fail(f"{event_file}: {exc.field}: {exc.message}")
    click.echo(explain(ruleset, events))


@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
def db_upgrade():
    """Apply schema migrations to DATABASE_URL."""
    from sla_guard.store.migrate import upgrade

    settings = settings_or_fail()
    upgrade(settings.database_url)
    click.echo("database schema is up to date")


@main.group("quarantine")
def quarantine_group():
    """Leads whose events could not be applied."""


@quarantine_group.command("list")
def quarantine_list():
    """List quarantined leads with the reason."""
    from sla_guard.store.db import Database
    from sla_guard.store.quarantine import quarantined

    database = Database(settings_or_fail().database_url)
    with database.session() as session:
        rows = quarantined(session)
    database.dispose()
    for row, waiting in rows:
        click.echo(f"{row.lead_id}\t{row.failures} failures, {waiting} events waiting\t{row.error}: {row.reason}")
    click.echo(f"{len(rows)} leads quarantined")


@quarantine_group.command("retry")
@click.argument("lead_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Retry every quarantined lead.")
def quarantine_retry(lead_ids: tuple[str, ...], every: bool):
    """Apply quarantined leads' events again now (after a fix); exit 1 if any still fails."""
    from sla_guard.ingest.processing import apply_lead
    from sla_guard.runtime import Runtime
    from sla_guard.store.quarantine import quarantined_ids, release

    if not lead_ids and not every:
        fail("name the leads to retry, or pass --all")
    runtime = Runtime.from_settings(settings_or_fail())
    with runtime.db.session() as session:
        wanted = quarantined_ids(session) if every else list(lead_ids)
        released = release(session, wanted)
    failed = 0
    for lead_id in wanted:
        if lead_id not in released:
            click.echo(f"{lead_id}: not quarantined")
        elif apply_lead(runtime, lead_id):
            click.echo(f"{lead_id}: applied")
        else:
            failed += 1
            click.echo(f"{lead_id}: failed again, still quarantined")
    runtime.db.dispose()
    raise SystemExit(1 if failed else 0)


def _revenue_insight_commands() -> None:
    from sla_guard import insight_cli

    for command in (insight_cli.spend, insight_cli.users, insight_cli.demo):
        main.add_command(command)


_revenue_insight_commands()


if __name__ == "__main__":
    main()
