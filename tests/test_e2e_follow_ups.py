"""End to end: a lead enters "proposal" in amoCRM; the real processes create the follow-up task in
a local amoCRM API after its seconds-long delay, escalate the missed step, and a touch cancels the rest."""

from __future__ import annotations

import json
import textwrap
import time
from urllib.parse import urlencode

import pytest
import requests

from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

PROPOSAL = "67548619"
ACCOUNT = "30307558"
PATH_TOKEN = "amo-path-token-0123456789"
OWNER = "11087123"

RULES = textwrap.dedent(f"""
    timezone: UTC
    channels:
      sink: {{type: webhook, url: "${{SINK_URL}}"}}
    people:
      "{OWNER}": {{channels: [sink]}}
    rules:
      - name: deals
        first_touch: {{within: 1h}}
        follow_ups:
          - name: proposal
            when: {{stage: "{PROPOSAL}"}}
            after: [2s, 10m]  # the second step is far enough off for a loaded machine to touch first
            grace: 2s
            until: [touch, stage_change, close]
            task: "Follow up on the proposal for {{lead.name}}"
            escalate: [{{after: 0s, notify: [owner]}}]
""")


def amo_form(entity: str, action: str, item: dict) -> bytes:
    fields = {f"{entity}[{action}][0][{key}]": value for key, value in item.items()}
    fields.update({"account[subdomain]": "acmesales", "account[id]": ACCOUNT})
    return urlencode(fields).encode()


@pytest.fixture
def stack(start_stack, sink, httpserver):
    httpserver.expect_request("/api/v4/tasks", method="POST").respond_with_json(
        {"_embedded": {"tasks": [{"id": 777001, "request_id": "0"}]}}
    )
    httpserver.expect_request("/api/v4/tasks/777001", method="PATCH").respond_with_json({"id": 777001})
    return start_stack(
        RULES,
        SLA_GUARD_AMOCRM_TOKEN=PATH_TOKEN,
        SLA_GUARD_AMOCRM_ACCOUNT_ID=ACCOUNT,
        SLA_GUARD_AMOCRM_BASE_URL=httpserver.url_for("/").rstrip("/"),
        SLA_GUARD_AMOCRM_ACCESS_TOKEN="amo-access-token-0123456789",
    )


def seen(httpserver, method: str, path: str) -> list:
    return [request for request, _ in httpserver.log if request.method == method and request.path == path]


def test_proposal_follow_up_task_missed_escalation_and_touch_cancelling_the_rest(stack, httpserver):
    hook = f"{stack.base_url}/webhooks/amocrm/{PATH_TOKEN}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    created_at = int(time.time())
    lead = {
        "id": "15318175",
        "name": "Supply contract",
        "status_id": PROPOSAL,
        "pipeline_id": "8572511",
        "responsible_user_id": OWNER,
        "price": "480000",
        "date_create": created_at,
        "created_at": created_at,
        "updated_at": created_at,
        "last_modified": created_at,
        "account_id": ACCOUNT,
    }
    response = requests.post(hook, data=amo_form("leads", "add", lead), headers=form, timeout=30)
    assert response.status_code == 202, response.text

    assert wait_for(lambda: seen(httpserver, "POST", "/api/v4/tasks")), stack.logs("worker")
    assert time.time() >= created_at + 2
    [task] = json.loads(seen(httpserver, "POST", "/api/v4/tasks")[0].data)
    assert (task["entity_id"], task["responsible_user_id"]) == (15318175, int(OWNER))
    assert task["text"].startswith("Follow up on the proposal for Supply contract")

    def missed():
        return [
            json.loads(r.data)
            for r in seen(httpserver, "POST", "/alerts")
            if json.loads(r.data)["kind"] == "follow_up.missed"
        ]

    assert wait_for(missed), stack.logs("worker")
    assert time.time() >= created_at + 4
    assert [a["recipient"] for a in missed()] == [OWNER]

    time.sleep(1.1)  # the touch comes after the step was due: done late
    touched_at = int(time.time())
    note = {
        "note][note_type": "11",
        "note][element_type": "2",
        "note][element_id": "15318175",
        "note][id": "4600999",
        "note][created_by": OWNER,
        "note][created_at": touched_at,
        "note][updated_at": touched_at,
        "note][account_id": ACCOUNT,
        "note][text": json.dumps({"DURATION": 120, "PHONE": "+79001234567"}),
    }
    response = requests.post(hook, data=amo_form("leads", "note", note), headers=form, timeout=30)
    assert response.status_code == 202, response.text
    assert wait_for(lambda: seen(httpserver, "PATCH", "/api/v4/tasks/777001")), stack.logs("worker")

    def tasks() -> list[str]:
        lead = stack.lead("amocrm:lead:15318175")
        return [task["status"] for task in lead["follow_up_tasks"]] if lead else []

    # the task is recorded closed once the CRM has answered the PATCH: wait for that write
    assert wait_for(lambda: tasks() == ["closed"])
    detail = stack.lead("amocrm:lead:15318175")
    steps = {c["name"]: c["status"] for c in detail["clocks"] if c["name"].startswith("follow_up:")}
    assert steps == {"follow_up:proposal:1": "missed", "follow_up:proposal:2": "cancelled"}
    assert [t["status"] for t in detail["follow_up_tasks"]] == ["closed"]
    assert len(seen(httpserver, "POST", "/api/v4/tasks")) == 1
