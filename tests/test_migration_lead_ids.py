"""The migration that gives CRM leads ids carrying their source converts rows already stored."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from sla_guard.store.migrate import upgrade

BEFORE = "0007_quarantined_leads"
UUID = "adf21080-0e10-11eb-879b-05d71fb426ec"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC).replace(tzinfo=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request, tmp_path):
    """A database at the revision before, on SQLite or on a PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server = os.environ.get("SLA_GUARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"sla_guard_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def event(connection, source, event_id, lead_id, url=None):
    payload = {
        "event_id": event_id,
        "type": "lead.created",
        "occurred_at": "2026-11-20T09:00:00Z",
        "lead": {"id": lead_id, **({"url": url} if url else {})},
    }
    connection.execute(
        text(
            "INSERT INTO events (source, event_id, lead_id, type, occurred_at, received_at, payload, processed_at)"
            " VALUES (:source, :event_id, :lead_id, 'lead.created', :now, :now, :payload, :now)"
        ),
        {"source": source, "event_id": event_id, "lead_id": lead_id, "now": NOW, "payload": json.dumps(payload)},
    )


def lead(connection, lead_id):
    connection.execute(
        text("INSERT INTO leads (lead_id, status, known, updated_at) VALUES (:id, 'open', true, :now)"),
        {"id": lead_id, "now": NOW},
    )


def test_existing_crm_leads_get_ids_carrying_their_source(old_db):
    upgrade(old_db, BEFORE)
    engine = create_engine(old_db)
    with engine.begin() as connection:
        event(connection, "amocrm", "amocrm-leads-add-15318175-1", "15318175")
        event(connection, "bitrix24", "bitrix24-lead-5-created", "5")
        event(connection, "bitrix24", "bitrix24-deal-5-created", "5")  # once merged with lead 5
        event(connection, "pipedrive", "pipedrive-1", "8")
        event(connection, "pipedrive", "pipedrive-2", UUID)
        event(connection, "hubspot", "hubspot-3", "1148387968", url="https://app.hubspot.com/contacts/1/record/0-3/1")
        event(connection, "generic", "evt-1", "L-1001")
        for lead_id in ("15318175", "5", "8", UUID, "1148387968", "L-1001"):
            lead(connection, lead_id)
        clock = connection.execute(
            text(
                "INSERT INTO clocks (lead_id, name, cycle, rule_name, started_at, due_at, budget_used_s)"
                " VALUES ('5', 'first_touch', 0, 'r', :now, :now, 0) RETURNING id"
            ),
            {"now": NOW},
        ).scalar()
        connection.execute(
            text(
                "INSERT INTO escalations (clock_id, lead_id, level, kind, due_at, fired_at)"
                " VALUES (:clock, '5', 1, 'first_touch.breach', :now, :now)"
            ),
            {"clock": clock, "now": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO outbox_items (kind, item_key, args, status, attempts, created_at)"
                " VALUES ('reassign', '1', :args, 'pending', 0, :now)"
            ),
            {"args": json.dumps({"lead_id": "15318175", "owner": "11087456", "escalation_id": 1}), "now": NOW},
        )
    upgrade(old_db)
    with engine.connect() as connection:
        leads = set(connection.execute(text("SELECT lead_id FROM leads")).scalars())
        events = dict(connection.execute(text("SELECT event_id, lead_id FROM events")).all())
        clock_lead = connection.execute(text("SELECT lead_id FROM clocks")).scalar()
        escalation_lead = connection.execute(text("SELECT lead_id FROM escalations")).scalar()
        item_args = json.loads(connection.execute(text("SELECT args FROM outbox_items")).scalar())
        unprocessed = set(connection.execute(text("SELECT lead_id FROM events WHERE processed_at IS NULL")).scalars())
    engine.dispose()
    assert leads == {
        "amocrm:lead:15318175",
        "bitrix24:lead:5",
        "pipedrive:deal:8",
        f"pipedrive:lead:{UUID}",
        "hubspot:deal:1148387968",
        "L-1001",
    }
    assert events == {
        "amocrm-leads-add-15318175-1": "amocrm:lead:15318175",
        "bitrix24-lead-5-created": "bitrix24:lead:5",
        "bitrix24-deal-5-created": "bitrix24:deal:5",
        "pipedrive-1": "pipedrive:deal:8",
        "pipedrive-2": f"pipedrive:lead:{UUID}",
        "hubspot-3": "hubspot:deal:1148387968",
        "evt-1": "L-1001",
    }
    assert clock_lead == escalation_lead == "bitrix24:lead:5"
    assert item_args["lead_id"] == "amocrm:lead:15318175"
    # lead 5 and deal 5 were one lead: both are applied again, each from its own events
    assert unprocessed == {"bitrix24:lead:5", "bitrix24:deal:5"}
