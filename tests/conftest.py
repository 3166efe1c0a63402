"""Shared fixtures: real SQLite and PostgreSQL databases, the real Redis, an injected clock.

PostgreSQL tests use a database of their own (``sla_guard_test_<pid>``) created on the server
at ``SLA_GUARD_TEST_PG`` (default: the local server, user postgres); Redis tests use their own
queue name so runs never see each other's jobs.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import create_engine, text

from sla_guard import create_app
from sla_guard.config import load_settings
from sla_guard.runtime import Runtime, RulesHolder
from sla_guard.store.migrate import upgrade
from sla_guard.store.models import Base

PG_SERVER = os.environ.get("SLA_GUARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("SLA_GUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")
SECRET = "test-webhook-secret-0123456789"
API_TOKEN = "test-api-token-0123456789abcdef"
FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"

RULES = textwrap.dedent("""
    timezone: UTC
    channels:
      sink: {type: webhook, url: "${SINK_URL:-http://127.0.0.1:9/none}"}
    people:
      anna: {manager: olga, team: inbound, channels: [sink]}
      boris: {manager: olga, team: inbound, channels: [sink]}
      olga: {channels: [sink]}
      ivan: {channels: [sink]}
    teams:
      inbound: {head: ivan, members: [anna, boris]}
    rules:
      - name: hot website leads
        match: {source: [website, landing], priority: hot}
        first_touch:
          within: 15m
          warn_at: 80%
          escalate:
            - {after: 0m, notify: [owner, manager]}
            - {after: 1h, notify: [head], reassign: true}
      - name: everything else
        first_touch: {within: 2h, escalate: [{after: 0m, notify: [owner]}]}
""")


class FakeClock:
    """An injectable clock: starts at a fixed aware UTC instant and moves only when told."""

    def __init__(self, start: datetime):
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def _reset_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture(scope="session")
def pg_url():
    name = f"sla_guard_test_{os.getpid()}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sla_guard.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """Each test using it runs twice: on SQLite and on PostgreSQL, starting from empty tables."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    _reset_schema(url)
    return url


@pytest.fixture
def redis_conn():
    connection = Redis.from_url(REDIS_URL)
    connection.ping()
    yield connection
    connection.close()


@pytest.fixture
def queue_name():
    return f"sla-guard-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clock():
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def rules_text():
    return RULES


@pytest.fixture
def rules_path(tmp_path, rules_text):
    path = tmp_path / "sla.yaml"
    path.write_text(rules_text)
    return path


@pytest.fixture
def settings(db_url, rules_path, queue_name):
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "SLA_GUARD_RULES": str(rules_path),
        "SLA_GUARD_WEBHOOK_SECRET": SECRET,
        "SLA_GUARD_API_TOKEN": API_TOKEN,
        "SLA_GUARD_QUEUE": queue_name,
        "SLA_GUARD_RECONCILE_INTERVAL_S": 1,
    }


@pytest.fixture
def app(settings, clock):
    app = create_app({**settings, "TESTING": True, "CLOCK": clock})
    yield app
    app.extensions["sla_guard.db"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def runtime(settings, clock, redis_conn, queue_name):
    full = load_settings(env={}, overrides=settings)
    rt = Runtime.from_settings(full, rules=RulesHolder(settings["SLA_GUARD_RULES"]))
    rt.now = clock
    yield rt
    keys = list(redis_conn.scan_iter(f"*{queue_name}*"))
    if keys:
        redis_conn.delete(*keys)
    rt.db.dispose()
