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
    return Database(settings["DATABASE_URL"])


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
