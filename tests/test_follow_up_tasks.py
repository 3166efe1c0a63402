"""Follow-up steps become tasks in the lead's CRM (a local amoCRM API), or alerts to the owner."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta

import pytest

from sla_guard.store.models import AlertRow, ClockRow, EscalationRow, FollowUpTaskRow, LeadRow
from sla_guard.timers.reconciler import reconcile
from tests.support.amocrm import AMO_TOKEN
from tests.support.firing import run_timer


@pytest.fixture
def settings(settings, amocrm_settings):
    return {**settings, **amocrm_settings}


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        channels:
          sink: {type: webhook, url: "${SINK_URL:-http://127.0.0.1:9/none}"}
        people:
          "11087123": {manager: olga, channels: [sink]}
          olga: {channels: [sink]}
        rules:
          - name: deals
            first_touch: {within: 2h}
            follow_ups:
              - name: proposal
                when: {stage: proposal}
                after: [1h, 1d]
                grace: 2h
                until: [touch, stage_change, close]
                task: "Follow up on the proposal for {lead.name}"
                escalate: [{after: 0m, notify: [owner, manager]}]
    """)


@pytest.fixture
def step(db_rows):
    def step(runtime, number) -> ClockRow:
        [row] = db_rows(runtime, ClockRow, ClockRow.name == f"follow_up:proposal:{number}")
        return row

    return step


LEAD = "amocrm:lead:15318175"


@pytest.fixture
def enter_proposal(runtime, clock, event, store_events):
    """``enter_proposal(lead_id=LEAD, source="amocrm", **lead)``: the owner 11087123's lead is
    created in the proposal stage now (its follow-up steps are planned); returns when."""

    def enter(lead_id: str = LEAD, source: str = "amocrm", **lead):
        start = clock()
        fields = {"stage": "proposal", "owner": "11087123", **lead}
        store_events(runtime, source, event("c", "lead.created", start, lead_id=lead_id, lead=fields))
        return start

    return enter


@pytest.fixture
def fire_first_step(runtime, clock, step):
    """``fire_first_step()``: an hour passes and the first step's timer fires."""

    def fire() -> None:
        clock.advance(hours=1)
        run_timer(runtime, step(runtime, 1).id)

    return fire


def amo_requests(crm, method, path_prefix="/api/v4/tasks"):
    return [request for request, _ in crm.log if request.method == method and request.path.startswith(path_prefix)]


def test_a_due_step_becomes_a_crm_task_then_a_touch_closes_it_and_cancels_the_rest(
    amocrm_api, runtime, clock, event, run_worker, db_rows, store_events, step, enter_proposal
):
    amocrm_api.expect_request("/api/v4/tasks", method="POST").respond_with_json(
        {"_embedded": {"tasks": [{"id": 9001, "request_id": "0"}]}}
    )
    amocrm_api.expect_request("/api/v4/tasks/9001", method="PATCH").respond_with_json({"id": 9001})
    start = enter_proposal(name="ACME")
    first = step(runtime, 1)
    assert first.next_fire_at == start + timedelta(hours=1)
    clock.advance(hours=1)
    run_timer(runtime, first.id)
    [create] = amo_requests(amocrm_api, "POST")
    assert create.headers["Authorization"] == f"Bearer {AMO_TOKEN}"
    [body] = json.loads(create.data)
    assert (body["entity_id"], body["entity_type"], body["responsible_user_id"]) == (15318175, "leads", 11087123)
    assert body["text"].startswith("Follow up on the proposal for ACME")
    assert body["complete_till"] == int((start + timedelta(hours=3)).timestamp())
    [task] = db_rows(runtime, FollowUpTaskRow)
    assert (task.status, task.crm, task.crm_task_id) == ("created", "amocrm", "9001")
    run_timer(runtime, first.id)  # a second firing creates nothing more
    assert len(amo_requests(amocrm_api, "POST")) == 1

    clock.advance(minutes=30)
    store_events(
        runtime,
        "amocrm",
        event("t", "lead.touched", clock(), lead_id="amocrm:lead:15318175", touch={"channel": "call"}),
    )
    run_worker(runtime)
    assert (step(runtime, 1).stop_reason, step(runtime, 2).stop_reason) == ("done", "cancelled")
    [close] = amo_requests(amocrm_api, "PATCH")
    assert json.loads(close.data)["is_completed"] is True
    assert db_rows(runtime, FollowUpTaskRow)[0].status == "closed"


def test_a_missed_step_escalates(amocrm_api, runtime, clock, db_rows, step, enter_proposal):
    amocrm_api.expect_request("/api/v4/tasks", method="POST").respond_with_json({"_embedded": {"tasks": [{"id": 7}]}})
    enter_proposal()
    first = step(runtime, 1)
    clock.advance(hours=3, seconds=1)
    run_timer(runtime, first.id)
    kinds = sorted((e.level, e.kind) for e in db_rows(runtime, EscalationRow))
    assert kinds == [(0, "follow_up.task"), (1, "follow_up.missed")]
    alerts = [json.loads(request.data) for request, _ in amocrm_api.log if request.path == "/alerts"]
    assert sorted(a["recipient"] for a in alerts) == ["11087123", "olga"]
    assert {a["kind"] for a in alerts} == {"follow_up.missed"}


def test_without_crm_credentials_the_owner_gets_the_follow_up_as_an_alert(
    amocrm_api, runtime, db_rows, enter_proposal, fire_first_step
):
    enter_proposal("L-1001", "generic", name="ACME")
    fire_first_step()
    [task] = db_rows(runtime, FollowUpTaskRow)
    assert (task.status, task.crm) == ("alerted", None)
    [alert] = [json.loads(request.data) for request, _ in amocrm_api.log if request.path == "/alerts"]
    assert (alert["kind"], alert["recipient"]) == ("follow_up.task", "11087123")
    assert alert["text"].startswith("Follow-up for lead ACME #L-1001: Follow up on the proposal for ACME")


def test_a_rate_limited_crm_is_retried_after_its_wait_without_a_duplicate(
    amocrm_api, runtime, clock, run_worker, db_rows, enter_proposal, fire_first_step
):
    amocrm_api.expect_ordered_request("/api/v4/tasks", method="POST").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "7"}
    )
    amocrm_api.expect_ordered_request("/api/v4/tasks", method="GET").respond_with_data("", status=204)
    amocrm_api.expect_ordered_request("/api/v4/tasks", method="POST").respond_with_json(
        {"_embedded": {"tasks": [{"id": 42}]}}
    )
    enter_proposal()
    fire_first_step()
    [task] = db_rows(runtime, FollowUpTaskRow)
    assert (task.status, task.attempts, task.crm_task_id) == ("pending", 1, None)
    assert "429" in task.last_error or "rate" in task.last_error.lower()
    assert AMO_TOKEN not in task.last_error
    clock.advance(seconds=3)
    reconcile(runtime)
    run_worker(runtime)
    assert db_rows(runtime, FollowUpTaskRow)[0].status == "pending"  # still inside Retry-After
    clock.advance(seconds=5)
    reconcile(runtime)
    run_worker(runtime)
    [task] = db_rows(runtime, FollowUpTaskRow)
    assert (task.status, task.crm_task_id) == ("created", "42")
    assert len(amo_requests(amocrm_api, "POST")) == 2


def test_the_timeline_shows_each_step(
    amocrm_api, app, client, runtime, api_token, db_rows, enter_proposal, fire_first_step
):
    amocrm_api.expect_request("/api/v4/tasks", method="POST").respond_with_json({"_embedded": {"tasks": [{"id": 5}]}})
    enter_proposal()
    fire_first_step()
    lead = client.get("/api/leads/amocrm:lead:15318175", headers={"Authorization": f"Bearer {api_token}"}).get_json()
    [task] = lead["follow_up_tasks"]
    assert (task["step"], task["status"], task["crm_task_id"]) == ("follow_up:proposal:1", "created", "5")
    planned = [c for c in lead["clocks"] if c["name"].startswith("follow_up:")]
    assert [c["status"] for c in planned] == ["running", "running"]
    whats = [item["what"] for item in lead["timeline"]]
    assert "follow_up.task" in whats and "task.created" in whats
    assert db_rows(runtime, AlertRow) == []


def test_the_crm_echo_of_a_task_sla_guard_closed_is_not_a_touch(
    amocrm_api, runtime, clock, event, run_worker, db_rows, store_events, step, enter_proposal, fire_first_step
):
    amocrm_api.expect_request("/api/v4/tasks", method="POST").respond_with_json({"_embedded": {"tasks": [{"id": 31}]}})
    amocrm_api.expect_request("/api/v4/tasks/31", method="PATCH").respond_with_json({"id": 31})
    enter_proposal()
    fire_first_step()
    clock.advance(minutes=10)
    store_events(
        runtime,
        "amocrm",
        event("s", "lead.stage_changed", clock(), lead_id="amocrm:lead:15318175", lead={"stage": "negotiation"}),
    )
    run_worker(runtime)
    assert db_rows(runtime, FollowUpTaskRow)[0].status == "closed"
    clock.advance(seconds=5)  # amoCRM reports the completion sla-guard made
    store_events(
        runtime,
        "amocrm",
        event(
            "echo", "lead.touched", clock(), lead_id="amocrm:lead:15318175", touch={"channel": "task", "task_id": "31"}
        ),
    )
    assert step(runtime, 1).stop_reason == "cancelled"
    [lead] = db_rows(runtime, LeadRow)
    assert lead.first_touch_at is None
