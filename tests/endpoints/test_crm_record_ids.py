"""Lead ids carry their CRM and entity: Bitrix24's lead 5 and deal 5 are two leads with two
alerts, two CRMs' record 5 never meet, and the generic endpoint keeps the ids it was sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sla_guard.core.record_ids import CrmRecord, crm_record, lead_id
from sla_guard.store.models import ClockRow, LeadRow
from tests.support.crm_payloads import load
from tests.support.crm_requests import local_portal, post, rows
from tests.support.firing import run_timer
from tests.support.webhooks import received

CREATED = datetime(2025, 12, 18, 8, 38, 40, tzinfo=UTC)


def test_a_lead_id_names_its_crm_and_entity():
    assert lead_id("bitrix24", "deal", "5") == "bitrix24:deal:5"
    assert crm_record("bitrix24:lead:5") == CrmRecord("bitrix24", "lead", "5")
    assert crm_record("pipedrive:lead:adf21080-0e10-11eb-879b-05d71fb426ec").id == (
        "adf21080-0e10-11eb-879b-05d71fb426ec"
    )
    for bare in ("L-1001", "5", "bitrix24:contact:5", "salesforce:lead:5", "amocrm:lead:", "amocrm:deal:5"):
        assert crm_record(bare) is None, bare
    with pytest.raises(ValueError):
        lead_id("amocrm", "deal", "5")


def portal_record(entity: str, number: str) -> dict:
    fields = {
        "ID": number,
        "TITLE": f"{entity} {number}",
        "ASSIGNED_BY_ID": "17",
        "DATE_CREATE": CREATED.isoformat(),
        "DATE_MODIFY": CREATED.isoformat(),
    }
    if entity == "lead":
        fields.update({"STATUS_ID": "NEW", "STATUS_SEMANTIC_ID": "P"})
    else:
        fields.update({"STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P", "CATEGORY_ID": "0"})
    return {"result": fields}


def test_lead_5_and_deal_5_of_one_portal_are_two_records_with_two_alerts(
    sink, app, client, runtime, clock, httpserver, run_worker
):
    fixture = load("bitrix24_lead_add.json")
    body = fixture["request"]["body"].replace("data%5BFIELDS%5D%5BID%5D=1000983", "data%5BFIELDS%5D%5BID%5D=5")
    clock.current = CREATED + timedelta(seconds=4)
    for entity in ("lead", "deal"):
        httpserver.expect_request(
            f"/rest/1/s3cr3tk3y0123456789/crm.{entity}.get.json", method="POST", query_string={"id": "5"}
        ).respond_with_json(portal_record(entity, "5"))
        notification = body.replace("event=ONCRMLEADADD", f"event=ONCRM{entity.upper()}ADD")
        response = post(client, fixture, body=local_portal(notification, httpserver))
        assert response.status_code == 202, response.get_json()
    run_worker(runtime)
    leads = {lead.lead_id: lead.name for lead in rows(app, LeadRow)}
    assert leads == {"bitrix24:lead:5": "lead 5", "bitrix24:deal:5": "deal 5"}

    clock.current = CREATED + timedelta(hours=2, seconds=1)
    for clock_row in rows(app, ClockRow):
        run_timer(runtime, clock_row.id)
    alerts = sorted((alert["lead_id"], alert["kind"]) for alert in received(sink))
    assert alerts == [("bitrix24:deal:5", "first_touch.breach"), ("bitrix24:lead:5", "first_touch.breach")]


def test_two_crms_record_5_are_two_leads_and_the_generic_endpoint_keeps_its_ids(
    app, client, runtime, clock, post_signed, run_worker
):
    clock.current = datetime(2024, 9, 17, 11, 33, tzinfo=UTC)
    amo = load("amocrm_lead_add.json")
    body = amo["request"]["body"].replace("15318175", "5")
    assert post(client, amo, body=body.encode()).status_code == 202
    generic = [
        {
            "event_id": "evt-5",
            "type": "lead.created",
            "occurred_at": "2024-09-17T11:32:00Z",
            "lead": {"id": "5", "owner": "anna"},
        },
        {
            "event_id": "evt-hubspot-call",
            "type": "lead.touched",
            "occurred_at": "2024-09-17T11:32:30Z",
            "lead": {"id": "amocrm:lead:5"},
            "touch": {"channel": "call", "by": "11087123"},
        },
    ]
    assert post_signed(client, generic, clock()).status_code == 202
    run_worker(runtime)
    leads = {lead.lead_id: lead for lead in rows(app, LeadRow)}
    assert set(leads) == {"amocrm:lead:5", "5"}
    assert leads["5"].owner == "anna"
    # a generic event naming a CRM record lands on that record's lead
    assert leads["amocrm:lead:5"].first_touch_at == datetime(2024, 9, 17, 11, 32, 30, tzinfo=UTC)
