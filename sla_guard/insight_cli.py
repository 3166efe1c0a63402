"""``sla-guard spend import``, ``sla-guard users add`` and ``sla-guard demo``: revenue insight from the shell."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from sla_guard.exceptions import ConfigError, InvalidReportQuery


def _stop(message: str, code: int = 2):
    click.echo(f"sla-guard: {message}", err=True)
    sys.exit(code)


def _database():
    from sla_guard.config import load_settings
    from sla_guard.store.db import Database

    try:
        settings = load_settings()
    except ConfigError as exc:
        _stop(str(exc))
    return Database(settings.database_url)


@click.group()
def spend():
    """Marketing spend per month and source."""


@spend.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def spend_import(file: str):
    """Upsert spend rows from a CSV file with the header month,source,amount."""
    from sla_guard.reports.spend import parse_spend_csv
    from sla_guard.store.insight import upsert_spend

    with open(file, encoding="utf-8") as handle:
        text = handle.read()
    try:
        rows = parse_spend_csv(text)
    except InvalidReportQuery as exc:
        _stop(f"{file}: {exc.field}: {exc.message}")
    database = _database()
    with database.session() as session:
        stored = upsert_spend(session, rows, datetime.now(UTC))
    database.dispose()
    click.echo(f"{stored} spend rows stored")


@click.group()
def users():
    """People who sign in to the dashboard."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "head", "manager", "marketing"]), required=True)
@click.option("--team", default=None, help="The team a manager sees (required for --role manager).")
@click.option("--locale", type=click.Choice(["en", "ru"]), default="en", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_add(name: str, role: str, team: str | None, locale: str, password_stdin: bool):
    """Create a dashboard user, or set a user's password, role and team."""
    from sla_guard.dashboard.auth import hash_password
    from sla_guard.store.insight import save_user

    name = name.strip()
    if not name or len(name) > 200 or "\x00" in name:
        _stop("NAME must be 1 to 200 characters")
    if role == "manager" and not team:
        _stop("a manager sees only their team: give --team")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        _stop("the password must have at least 8 characters")
    database = _database()
    with database.session() as session:
        save_user(session, name, hash_password(password), role, team, locale, datetime.now(UTC))
    database.dispose()
    click.echo(f"user {name} ({role}{', team ' + team if team else ''}) saved")


@click.command()
@click.option("--leads", default=400, show_default=True, type=click.IntRange(1, 100_000))
def demo(leads: int):
    """Seed a reproducible month of demo leads, spend and a dashboard user (demo / sla-guard-demo)."""
    seed_demo(leads)


def seed_demo(leads: int = 400) -> None:
    from sla_guard.config import load_settings
    from sla_guard.demo import DEMO_USER, seed
    from sla_guard.runtime import Runtime
    from sla_guard.store.migrate import upgrade

    try:
        settings = load_settings()
    except ConfigError as exc:
        _stop(str(exc))
    upgrade(settings.database_url)
    runtime = Runtime.from_settings(settings)
    done = seed(runtime, datetime.now(UTC).replace(microsecond=0), leads)
    runtime.db.dispose()
    click.echo(f"demo: {done['leads']} leads ({done['events']} events) stored, with a month of spend")
    click.echo(f"dashboard user: {DEMO_USER[0]} / {DEMO_USER[1]} (sign in at /dashboard/login)")
