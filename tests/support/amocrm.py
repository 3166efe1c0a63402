"""Fixtures for tests that drive leads from a local amoCRM API: the stand-in server, the REST
settings that point sla-guard at it, storing events as a webhook would, reading rows back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sla_guard.core.events import parse_events
from sla_guard.ingest.processing import process_lead
from sla_guard.store.repository import insert_events

AMO_TOKEN = "amo-long-lived-token-0123456789"
"""The long-lived amoCRM token of :func:`amocrm_settings` (parametrized tests name it at collection)."""


@pytest.fixture
def amocrm_api(httpserver, monkeypatch):
    """A local server standing in for amoCRM's REST API and for the managers' alert hook."""
    monkeypatch.setenv("SINK_URL", httpserver.url_for("/alerts"))
    httpserver.expect_request("/alerts", method="POST").respond_with_data("ok")
    return httpserver


@pytest.fixture
def amocrm_settings(amocrm_api) -> dict:
    """The settings that send sla-guard's amoCRM REST calls to :func:`amocrm_api`; a module
    adds them to its ``settings`` to use them."""
    return {
        "SLA_GUARD_AMOCRM_BASE_URL": amocrm_api.url_for("/").rstrip("/"),
        "SLA_GUARD_AMOCRM_ACCESS_TOKEN": AMO_TOKEN,
    }


@pytest.fixture
def store_events():
    """``store_events(runtime, source, *payloads)``: accept events from ``source`` and apply
    them, as a webhook and the pump would."""

    def store(runtime, source, *payloads):
        with runtime.db.session() as session:
            insert_events(session, source, parse_events(list(payloads)), runtime.now())
        for lead_id in {p["lead"]["id"] for p in payloads}:
            process_lead(runtime, lead_id)

    return store


@pytest.fixture
def db_rows():
    """``db_rows(runtime, Model, *where)``: the rows of a table, as the database holds them now."""

    def rows(runtime, model, *where):
        with runtime.db.session() as session:
            return session.execute(select(model).where(*where)).scalars().all()

    return rows
