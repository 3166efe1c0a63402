"""Checks made before a process starts: settings, rules file, Redis, database schema.

Each ``*_or_fail`` prints one clear line naming what is wrong and exits with code 2.
"""

from __future__ import annotations

import sys

import click

from sla_guard.config import Settings, load_settings
from sla_guard.exceptions import ConfigError, RulesError


def fail(message: str, code: int = 2):
    click.echo(f"sla-guard: {message}", err=True)
    sys.exit(code)


def settings_or_fail(**overrides) -> Settings:
    try:
        return load_settings(overrides={k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc))


def rules_or_fail(path: str):
    from sla_guard.core.rules.loading import load_rules_file

    try:
        return load_rules_file(path)
    except RulesError as exc:
        lines = "\n".join(f"  {where or path}: {message}" for where, message in exc.errors)
        fail(f"rules file {path} is invalid:\n{lines}")


def redis_or_fail(url: str) -> None:
    from redis.exceptions import RedisError

    from sla_guard.runtime import redis_client

    try:
        redis_client(url).ping()
    except RedisError:
        fail(
            f"Redis is not reachable at {url}: start it (`sudo apt-get install redis-server`, or "
            f"`redis-server --daemonize yes`) or point REDIS_URL at yours"
        )


def schema_or_fail(url: str) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from sla_guard.store.migrate import current, head

    try:
        at = current(url)
    except SQLAlchemyError as exc:
        fail(f"database at DATABASE_URL is not reachable ({type(exc).__name__})")
    if at != head():
        fail("the database schema is not up to date: run `sla-guard db upgrade`")
