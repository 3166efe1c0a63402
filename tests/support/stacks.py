"""Fixtures for end-to-end tests that start the real sla-guard processes."""

from __future__ import annotations

import pytest


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
