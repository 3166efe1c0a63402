"""Shared fixtures: real SQLite and PostgreSQL databases, the real Redis, the app and a worker runtime.

Helpers shared by many test modules are fixtures of the plugins in ``tests/support/`` (loaded
by ``addopts`` in pyproject.toml): an injected clock, signed webhooks, a burst worker run.

PostgreSQL tests use a database of their own (``sla_guard_test_<pid>``) created on the server
at ``SLA_GUARD_TEST_PG`` (default: the local server, user postgres). Redis tests use a
``redis-server`` of their own, started for the session on a free port (or the server at
``SLA_GUARD_TEST_REDIS`` when set, which the suite may flush), so a test run never touches
anybody else's Redis data; each test still gets its own queue name.
"""

from __future__ import annotations

import os
import textwrap
import uuid

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import create_engine, text

from sla_guard import create_app
from sla_guard.config import load_settings
from sla_guard.redis_server import RedisServer
from sla_guard.runtime import RulesHolder, Runtime
from sla_guard.store.migrate import upgrade
from tests.support.databases import empty_tables

PG_SERVER = os.environ.get("SLA_GUARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

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
    empty_tables(url)
    return url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A Redis of this test session's own: nothing else's data is ever seen or flushed."""
    external = os.environ.get("SLA_GUARD_TEST_REDIS")
    if external:
        yield external
        return
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_conn(redis_url):
    connection = Redis.from_url(redis_url)
    connection.ping()
    yield connection
    connection.close()


@pytest.fixture
def queue_name():
    return f"sla-guard-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def rules_text():
    return RULES


@pytest.fixture
def rules_path(tmp_path, rules_text):
    path = tmp_path / "sla.yaml"
    path.write_text(rules_text)
    return path


@pytest.fixture
def settings(db_url, rules_path, queue_name, redis_url, webhook_secret, api_token):
    """The environment a test's app and worker runtime start with, by the variables' names.

    A test overrides a value simply: ``{**settings, "SLA_GUARD_ALERT_MAX_ATTEMPTS": 3}`` for the
    app, or ``runtime.settings = runtime.settings.replace(alert_max_attempts=3)`` for a runtime,
    whose :class:`~sla_guard.config.Settings` are typed and checked again on each change.
    """
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SLA_GUARD_RULES": str(rules_path),
        "SLA_GUARD_WEBHOOK_SECRET": webhook_secret,
        "SLA_GUARD_API_TOKEN": api_token,
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
    typed = load_settings(env={}, overrides=settings)
    rt = Runtime.from_settings(typed, rules=RulesHolder(typed.rules_path))
    rt.now = clock
    yield rt
    keys = list(redis_conn.scan_iter(f"*{queue_name}*"))
    if keys:
        redis_conn.delete(*keys)
    rt.db.dispose()
