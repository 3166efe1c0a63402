"""Plain helpers of the tests that drive the CRM endpoints of a test app with every CRM enabled
(see ``tests/endpoints/conftest.py``): the CRMs' credentials, requests sent as each CRM sends
them, and what the database and the local server saw."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from sla_guard.core.events import LeadEvent
from sla_guard.ingest.adapters import hubspot
from sla_guard.store.models import CrmLookupRow, EventRow

AMO_TOKEN = "amo-path-token-0123456789abcdef"
AMO_ACCOUNT = "30307558"
B24_APP_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
B24_KEY = "s3cr3tk3y0123456789"
HUBSPOT_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
HUBSPOT_URL = "https://hooks.example.com/webhooks/hubspot"
PIPEDRIVE_USER, PIPEDRIVE_PASSWORD = "sla-guard", "change-me"  # the fixtures' basic auth
AMO_ACCESS_TOKEN = "amo-long-lived-access-token-0123"
CRM_PREFIXES = ("SLA_GUARD_AMOCRM_", "SLA_GUARD_BITRIX24_", "SLA_GUARD_HUBSPOT_", "SLA_GUARD_PIPEDRIVE_")
OWNERS = ("11087123", "11940747", "17", "77001", "12415231")
"""CRM user ids given a channel in the rules, so that their alerts reach the sink."""


def rest_calls(server) -> list:
    return [request for request, _ in server.log if request.path.startswith("/rest/")]


def post(client, fixture: dict, *, body: bytes | None = None, headers: dict | None = None, path: str | None = None):
    """Post a fixture's request exactly as the CRM sends it (or with the given changes)."""
    spec = fixture["request"]
    all_headers = {**spec["headers"], **(headers or {})}
    content_type = all_headers.pop("Content-Type")
    return client.open(
        path or spec["path"].replace("<token>", AMO_TOKEN),
        method=spec["method"],
        data=spec["body"].encode() if body is None else body,
        content_type=content_type,
        headers=all_headers,
    )


def hubspot_signed(body: bytes, now: datetime, secret: str = HUBSPOT_SECRET) -> dict:
    """The headers HubSpot sends with ``body`` at ``now``."""
    stamp = str(int(now.timestamp() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-Version": "v3",
        "X-HubSpot-Request-Timestamp": stamp,
        "X-HubSpot-Signature-v3": hubspot.signature(secret, "POST", HUBSPOT_URL, body, stamp),
    }


def local_portal(body: str, server) -> bytes:
    """The notification as the stand-in portal sends it: ``auth[domain]`` names the local host
    (sla-guard refuses notifications from another portal than its REST URL's)."""
    host = urlsplit(server.url_for("/")).hostname
    changed = body.replace("auth%5Bdomain%5D=acme.bitrix24.ru", f"auth%5Bdomain%5D={host}")
    assert changed != body
    return changed.encode()


def rows(app, model, *where):
    with app.extensions["sla_guard.db"].session() as session:
        return session.execute(select(model).where(*where)).scalars().all()


def stored(app, source: str | None = None) -> list[LeadEvent]:
    where = [EventRow.source == source] if source else []
    with app.extensions["sla_guard.db"].session() as session:
        payloads = session.execute(
            select(EventRow.payload).where(*where).order_by(EventRow.occurred_at, EventRow.id)
        ).scalars()
        return [LeadEvent.from_json(payload) for payload in payloads]


def nothing_stored(app) -> bool:
    return rows(app, EventRow) == [] and rows(app, CrmLookupRow) == []


def sent_at(fixture: dict) -> datetime:
    """When the CRM sent a Bitrix24 fixture's notification (its ``ts``)."""
    ts = next(part for part in fixture["request"]["body"].split("&") if part.startswith("ts="))
    return datetime.fromtimestamp(int(ts[3:]), UTC)


def expect_portal(server, method: str, record_id: str, reply: dict, status: int = 200):
    """The portal answers one ``<method>.json?id=<record_id>`` call, as Bitrix24's REST API does."""
    server.expect_ordered_request(
        f"/rest/1/{B24_KEY}/{method}.json", method="POST", query_string={"id": record_id}
    ).respond_with_json(reply, status=status)
