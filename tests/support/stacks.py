"""Fixtures for end-to-end tests that start the real sla-guard processes (see
:mod:`tests.support.processes`)."""

from __future__ import annotations

import pytest

from sla_guard.redis_server import RedisServer
from tests.support.processes import Stack


@pytest.fixture
def stack_env(db_url, redis_url, queue_name, webhook_secret, api_token, httpserver) -> dict:
    """The environment of the sla-guard processes a test starts: its database, its own Redis
    and queue, the test secrets, a reconciler pass every second, alerts to the local sink at
    ``/alerts`` (a module adds ``SLA_GUARD_RULES`` and whatever else it needs)."""
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "SLA_GUARD_WEBHOOK_SECRET": webhook_secret,
        "SLA_GUARD_API_TOKEN": api_token,
        "SLA_GUARD_QUEUE": queue_name,
        "SLA_GUARD_RECONCILE_INTERVAL_S": "1",
        "SINK_URL": httpserver.url_for("/alerts"),
    }


@pytest.fixture
def start_stack(tmp_path, stack_env):
    """``start_stack(rules_text, workers=1, **env)``: write the rules, upgrade the database and
    start `sla-guard serve` and ``workers`` `sla-guard worker` processes with :func:`stack_env`
    plus ``env``; returns the started :class:`Stack` (its ``rules_path`` is the rules file).
    Everything started is stopped after the test."""
    started: list[Stack] = []

    def start(rules_text: str, workers: int = 1, **env) -> Stack:
        folder = tmp_path / f"stack-{len(started)}"
        folder.mkdir()
        rules_path = folder / "sla.yaml"
        rules_path.write_text(rules_text)
        running = Stack({**stack_env, "SLA_GUARD_RULES": str(rules_path), **env}, folder)
        running.rules_path = rules_path
        started.append(running)
        running.upgrade()
        running.start_web()
        for _ in range(workers):
            running.start_worker()
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def killable_redis(tmp_path):
    """A Redis of one test's own that the test may kill and start again empty (see :class:`RedisServer`)."""
    server = RedisServer(tmp_path / "killable-redis").start()
    yield server
    server.kill()
