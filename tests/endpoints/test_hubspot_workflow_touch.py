"""The documented HubSpot fallback for call and meeting touches: a workflow's custom code action
(``docs/crm/hubspot-workflow-touch.js``), run by Node.js as HubSpot runs it, posts a signed touch
to the generic webhook of a running sla-guard, and it lands on the deal HubSpot's own webhook
created, once however often the workflow runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from sla_guard.redis_server import free_port
from sla_guard.store.models import EventRow, LeadRow
from tests.support.crm_requests import hubspot_signed, rows

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "crm" / "hubspot-workflow-touch.js"
NODE = shutil.which("node")

RUN = """
const action = require(process.argv[1]);
const event = JSON.parse(process.argv[2]);
action.main(event, (output) => console.log(JSON.stringify(output))).catch((error) => {
  console.error(String(error));
  process.exit(3);
});
"""


@pytest.fixture
def served(app):
    """The app behind a real HTTP server, as HubSpot's workflow reaches it."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(timeout=10)


def run_workflow_action(base_url: str, secret: str, deal_id: int, contacted_at: datetime, owner: str) -> dict:
    event = {
        "object": {"objectId": deal_id, "objectType": "DEAL"},
        "inputFields": {"notes_last_contacted": str(int(contacted_at.timestamp() * 1000)), "hubspot_owner_id": owner},
    }
    done = subprocess.run(
        [NODE, "-e", RUN, str(SNIPPET), json.dumps(event)],
        env={"SLA_GUARD_URL": base_url + "/", "SLA_GUARD_WEBHOOK_SECRET": secret, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(NODE is None, reason="Node.js runs HubSpot's custom code actions; it is not installed here")
def test_a_call_logged_on_a_deal_reaches_its_lead_through_the_workflow_action(
    app, client, runtime, clock, served, run_worker, webhook_secret
):
    now = datetime.now(UTC).replace(microsecond=0)
    clock.current = now
    created = now - timedelta(minutes=5)
    creation = [
        {
            "eventId": 7001,
            "subscriptionId": 25,
            "portalId": 62515,
            "appId": 54321,
            "occurredAt": int(created.timestamp() * 1000),
            "subscriptionType": "deal.creation",
            "attemptNumber": 0,
            "objectId": 9001,
            "changeFlag": "CREATED",
        }
    ]
    body = json.dumps(creation).encode()
    response = client.post("/webhooks/hubspot", data=body, headers=hubspot_signed(body, now))
    assert response.status_code == 202, response.get_json()

    contacted = now - timedelta(minutes=1)
    first = run_workflow_action(served, webhook_secret, 9001, contacted, "77001")
    again = run_workflow_action(served, webhook_secret, 9001, contacted, "77001")  # re-enrolment, or HubSpot's retry
    assert (first, again) == ({"outputFields": {"sla_guard_status": "202"}},) * 2
    run_worker(runtime)

    [lead] = rows(app, LeadRow)
    assert (lead.lead_id, lead.first_touch_at) == ("hubspot:deal:9001", contacted)
    touches = rows(app, EventRow, EventRow.type == "lead.touched")
    assert [(event.source, event.lead_id) for event in touches] == [("generic", "hubspot:deal:9001")]
    assert json.loads(touches[0].payload)["touch"] == {"channel": "call_or_meeting", "by": "77001"}
