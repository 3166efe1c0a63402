"""Shared by the tests that drive leads from a local amoCRM API: its fixtures and small helpers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sla_guard.core.events import parse_events
from sla_guard.ingest.processing import process_lead
from sla_guard.store.repository import insert_events

AMO_TOKEN = "amo-long-lived-token-0123456789"


@pytest.fixture
def crm(httpserver, monkeypatch):
    """A local server standing in for amoCRM's REST API and for the managers' alert hook."""
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/alerts"))
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    return httpserver


@pytest.fixture
def settings(settings, crm):
    return {
        **settings,
        "SLA_GUARD_AMOCRM_BASE_URL": crm.url_for("/").rstrip("/"),
        "SLA_GUARD_AMOCRM_ACCESS_TOKEN": AMO_TOKEN,
    }


def store(runtime, source, *payloads):
    """Accept events from ``source`` and apply them, as a webhook and the pump would."""
    with runtime.db.session() as session:
        insert_events(session, source, parse_events(list(payloads)), runtime.now())
    for lead_id in {p["lead"]["id"] for p in payloads}:
        process_lead(runtime, lead_id)


def rows(runtime, model, *where):
    with runtime.db.session() as session:
        return session.execute(select(model).where(*where)).scalars().all()
