"""A reassignment reaches the lead's CRM: each client's ``assign_owner`` against a local stand-in
of its API (checked exactly), then the whole path from an escalation level with ``reassign: true``
to ``PATCH /api/v4/leads/<id>`` on a local amoCRM, retries through the real worker included."""

from __future__ import annotations

import json
import logging
import textwrap
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from werkzeug import Response

from sla_guard.legacy_jobs import carry_over
from sla_guard.outbox.crm_reassign import REASSIGNMENTS, tell_crm
from sla_guard.outbox.crm_tasks import AmoCrmTasks, Bitrix24Tasks, HubSpotTasks, PipedriveTasks, TaskNotFound
from sla_guard.store.models import ClockRow, EscalationRow, LeadRow, OutboxItemRow
from sla_guard.timers.reconciler import reconcile
from tests.support.amocrm import AMO_TOKEN
from tests.support.firing import run_timer


@pytest.fixture
def crm(amocrm_api):
    """The local amoCRM API (and alert hook) these tests talk to."""
    return amocrm_api


@pytest.fixture
def settings(settings, amocrm_settings):
    return {**settings, **amocrm_settings}


HUBSPOT_TOKEN = "pat-eu1-0123abcd-4567-89ef-0123-456789abcdef"
PIPEDRIVE_TOKEN = "659c9fddb16335e48cc67114694b52074e812e03"
HOOK = "/rest/1/s3cr3tk3y"
PD_LEAD = "adf21080-0e10-11eb-879b-05d71fb426ec"


# --- the clients --------------------------------------------------------------------------


@pytest.fixture
def clients(httpserver, session, verify):
    yield {
        "amocrm": AmoCrmTasks(httpserver.url_for("/"), AMO_TOKEN, session, timeout=0.5),
        "bitrix24": Bitrix24Tasks(httpserver.url_for(f"{HOOK}/"), session, timeout=0.5),
        "hubspot": HubSpotTasks(HUBSPOT_TOKEN, session, api_url=httpserver.url_for("/"), timeout=0.5),
        "pipedrive": PipedriveTasks(PIPEDRIVE_TOKEN, session, api_url=httpserver.url_for("/api"), timeout=0.5),
    }
    verify(httpserver)


AMO_LEAD = {
    "id": 1000983,
    "updated_at": 1795420900,
    "_links": {"self": {"href": "https://acme.amocrm.ru/api/v4/leads/1000983"}},
}
B24_DONE = {"result": True, "time": {"start": 1795420000.1, "finish": 1795420000.2, "duration": 0.1}}
HS_DEAL = {
    "id": "1000983",
    "properties": {"hubspot_owner_id": "504141"},
    "createdAt": "2026-11-23T12:00:00.000Z",
    "updatedAt": "2026-11-23T12:05:00.000Z",
    "archived": False,
}


@pytest.mark.parametrize(
    "crm, kind, lead, method, path, headers, body, reply",
    [
        (
            "amocrm",
            "deal",
            "1000983",
            "PATCH",
            "/api/v4/leads/1000983",
            {"Authorization": f"Bearer {AMO_TOKEN}"},
            {"responsible_user_id": 504141},
            AMO_LEAD,
        ),
        (
            "amocrm",
            "lead",
            "1000983",
            "PATCH",
            "/api/v4/leads/1000983",
            {"Authorization": f"Bearer {AMO_TOKEN}"},
            {"responsible_user_id": 504141},
            AMO_LEAD,
        ),
        (
            "bitrix24",
            "deal",
            "1000983",
            "POST",
            f"{HOOK}/crm.deal.update",
            {},
            {"id": 1000983, "fields": {"ASSIGNED_BY_ID": 504141}, "params": {"REGISTER_SONET_EVENT": "Y"}},
            B24_DONE,
        ),
        (
            "bitrix24",
            "lead",
            "1000983",
            "POST",
            f"{HOOK}/crm.lead.update",
            {},
            {"id": 1000983, "fields": {"ASSIGNED_BY_ID": 504141}, "params": {"REGISTER_SONET_EVENT": "Y"}},
            B24_DONE,
        ),
        (
            "hubspot",
            "deal",
            "1000983",
            "PATCH",
            "/crm/v3/objects/deals/1000983",
            {"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
            {"properties": {"hubspot_owner_id": "504141"}},
            HS_DEAL,
        ),
        (
            "hubspot",
            "contact",
            "1000983",
            "PATCH",
            "/crm/v3/objects/contacts/1000983",
            {"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
            {"properties": {"hubspot_owner_id": "504141"}},
            HS_DEAL,
        ),
        (
            "pipedrive",
            "deal",
            "1000983",
            "PATCH",
            "/api/v2/deals/1000983",
            {"x-api-token": PIPEDRIVE_TOKEN},
            {"owner_id": 504141},
            {"success": True, "data": {"id": 1000983, "owner_id": 504141}},
        ),
        (
            "pipedrive",
            "lead",
            PD_LEAD,
            "PATCH",
            f"/api/v1/leads/{PD_LEAD}",
            {"x-api-token": PIPEDRIVE_TOKEN},
            {"owner_id": 504141},
            {"success": True, "data": {"id": PD_LEAD, "owner_id": 504141}},
        ),
    ],
)
def test_assign_owner_makes_the_documented_call(
    httpserver, clients, crm, kind, lead, method, path, headers, body, reply, expect
):
    expect(httpserver, method, path, headers=headers, body=body, reply=reply)
    assert clients[crm].assign_owner(lead, "504141", kind) is None


@pytest.mark.parametrize(
    "crm, method, path, status, reply, reply_headers, wait",
    [
        (
            "amocrm",
            "PATCH",
            "/api/v4/leads/1000983",
            429,
            {"title": "Too Many Requests", "status": 429},
            {"Retry-After": "3"},
            3.0,
        ),
        ("amocrm", "PATCH", "/api/v4/leads/1000983", 502, {"title": "Bad Gateway"}, {}, 1.0),
        (
            "bitrix24",
            "POST",
            f"{HOOK}/crm.deal.update",
            503,
            {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
            {},
            1.0,
        ),
        (
            "hubspot",
            "PATCH",
            "/crm/v3/objects/deals/1000983",
            429,
            {"status": "error", "message": "You have reached your secondly limit.", "policyName": "SECONDLY"},
            {"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"},
            1.0,
        ),
        (
            "pipedrive",
            "PATCH",
            "/api/v2/deals/1000983",
            429,
            {"success": False, "error": "Rate limit exceeded"},
            {"x-ratelimit-reset": "2"},
            2.0,
        ),
    ],
)
def test_rate_limits_and_server_errors_are_transient(
    httpserver, clients, crm, method, path, status, reply, reply_headers, wait, expect, raises_task_error
):
    expect(httpserver, method, path, status=status, reply=reply, reply_headers=reply_headers)
    error = raises_task_error(lambda: clients[crm].assign_owner("1000983", "504141"))
    assert error.transient and error.retry_after_s == wait and error.status == status


@pytest.mark.parametrize(
    "crm, method, path, status, reply, secret, says",
    [
        (
            "amocrm",
            "PATCH",
            "/api/v4/leads/1000983",
            401,
            {"title": "Unauthorized", "status": 401},
            AMO_TOKEN,
            "SLA_GUARD_AMOCRM_ACCESS_TOKEN",
        ),
        (
            "amocrm",
            "PATCH",
            "/api/v4/leads/1000983",
            400,
            {
                "title": "Bad Request",
                "status": 400,
                "detail": "Request validation failed",
                "validation-errors": [
                    {
                        "errors": [
                            {
                                "code": "NotSupportedChoice",
                                "path": "responsible_user_id",
                                "detail": "The value you selected is not a valid choice.",
                            }
                        ]
                    }
                ],
            },
            AMO_TOKEN,
            "responsible_user_id: The value you selected is not a valid choice.",
        ),
        (
            "bitrix24",
            "POST",
            f"{HOOK}/crm.deal.update",
            401,
            {"error": "NO_AUTH_FOUND", "error_description": "Wrong key"},
            "s3cr3tk3y",
            "SLA_GUARD_BITRIX24_REST_URL",
        ),
        (
            "hubspot",
            "PATCH",
            "/crm/v3/objects/deals/1000983",
            403,
            {
                "status": "error",
                "message": f"token {HUBSPOT_TOKEN} lacks crm.objects.deals.write",
                "category": "MISSING_SCOPES",
            },
            HUBSPOT_TOKEN,
            "HTTP 403",
        ),
        (
            "pipedrive",
            "PATCH",
            "/api/v2/deals/1000983",
            400,
            {"success": False, "error": "Owner not found"},
            PIPEDRIVE_TOKEN,
            "Owner not found",
        ),
    ],
)
def test_refusals_are_permanent_and_never_show_a_secret(
    httpserver, clients, crm, method, path, status, reply, secret, says, expect, raises_task_error
):
    expect(httpserver, method, path, status=status, reply=reply)
    error = raises_task_error(lambda: clients[crm].assign_owner("1000983", "504141"))
    assert not error.transient and error.status == status and says in str(error) and secret not in str(error)


@pytest.mark.parametrize(
    "crm, method, path, status, reply",
    [
        ("amocrm", "PATCH", "/api/v4/leads/1000983", 404, {"title": "Not Found", "status": 404}),
        ("bitrix24", "POST", f"{HOOK}/crm.deal.update", 400, {"error": "", "error_description": "Not found"}),
        (
            "hubspot",
            "PATCH",
            "/crm/v3/objects/deals/1000983",
            404,
            {"status": "error", "message": "resource not found", "category": "OBJECT_NOT_FOUND"},
        ),
    ],
)
def test_a_deleted_record_is_not_found(
    httpserver, clients, crm, method, path, status, reply, expect, raises_task_error
):
    expect(httpserver, method, path, status=status, reply=reply)
    assert isinstance(raises_task_error(lambda: clients[crm].assign_owner("1000983", "504141")), TaskNotFound)


@pytest.mark.parametrize(
    "crm, lead, owner, kind, says",
    [
        ("amocrm", "1000983", "boris", "deal", "numeric"),
        ("bitrix24", "1000983", "504141", "company", "kind"),
        ("hubspot", "L-1001", "504141", "deal", "numeric"),
        ("pipedrive", "1000983", "504141", "lead", "UUID"),
    ],
)
def test_bad_ids_are_refused_without_a_request(clients, crm, lead, owner, kind, says, raises_task_error):
    error = raises_task_error(lambda: clients[crm].assign_owner(lead, owner, kind))
    assert not error.transient and says in str(error)


# --- from the escalation ladder to amoCRM -------------------------------------------------

NATIVE = "15318175"
LEAD = f"amocrm:lead:{NATIVE}"
AMO_PATH = f"/api/v4/leads/{NATIVE}"


@pytest.fixture
def rules_text():
    return textwrap.dedent("""
        timezone: UTC
        channels:
          sink: {type: webhook, url: "${SINK_URL:-http://127.0.0.1:9/none}"}
        people:
          "11087123": {manager: olga, team: inbound, channels: [sink]}
          "11087456": {manager: olga, team: inbound, channels: [sink]}
          anna: {manager: olga, team: named, crm_id: 504141, channels: [sink]}
          boris: {manager: olga, team: named, crm_id: 504142, channels: [sink]}
          olga: {channels: [sink]}
        teams:
          inbound: {head: olga, members: ["11087123", "11087456"]}
          named: {head: olga, members: [anna, boris]}
        rules:
          - name: deals
            first_touch:
              within: 15m
              escalate:
                - {after: 0m, notify: [owner]}
                - {after: 1h, notify: [manager], reassign: true}
    """)


@pytest.fixture
def outcomes():
    """The records sla_guard.outbox.crm_reassign logs (whatever the logging set-up of other tests)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("sla_guard.outbox.crm_reassign")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def patches(server, path=AMO_PATH):
    return [json.loads(request.data) for request, _ in server.log if request.method == "PATCH" and request.path == path]


@pytest.fixture
def reach_the_reassigning_level(event, db_rows, store_events):
    def reach_the_reassigning_level(
        runtime, clock, server, source="amocrm", owner="11087123", lead_id=LEAD
    ) -> EscalationRow:
        """A new lead nobody touches: its first-touch clock fires level 0, then level 1 reassigns it."""
        store_events(
            runtime, source, event("c", "lead.created", clock(), lead_id=lead_id, lead={"owner": owner, "name": "ACME"})
        )
        [first_touch] = db_rows(runtime, ClockRow, ClockRow.name == "first_touch")
        clock.advance(minutes=15)
        run_timer(runtime, first_touch.id)
        assert patches(server, f"/api/v4/leads/{lead_id.rsplit(':', 1)[-1]}") == []  # level 0 only alerts
        clock.advance(hours=1)
        result = run_timer(runtime, first_touch.id)
        [escalation] = db_rows(runtime, EscalationRow, EscalationRow.reassigned_to.is_not(None))
        assert result.reassignments == [(lead_id, escalation.reassigned_to, escalation.id)]
        return escalation

    return reach_the_reassigning_level


def scheduled(runtime) -> dict[str, float]:
    registry = ScheduledJobRegistry(runtime.queue_name, connection=runtime.redis)
    return {job: registry.get_scheduled_time(job).timestamp() for job in registry.get_job_ids()}


def run_scheduler(runtime, now) -> None:
    """What RQ's scheduler does when the clock reads ``now``: queue the scheduled jobs due by then."""
    registry = ScheduledJobRegistry(runtime.queue_name, connection=runtime.redis)
    queue = Queue(runtime.queue_name, connection=runtime.redis)
    for due in registry.get_jobs_to_schedule(int(now.timestamp())):
        queue.enqueue_job(Job.fetch(due, connection=runtime.redis))
        registry.remove(due)


def reassign_jobs(runtime) -> dict[str, float]:
    return {job: at for job, at in scheduled(runtime).items() if "-reassign-" in job}


def answers(*responses: Response):
    """A handler answering the requests it gets with ``responses`` in turn (the alert sink keeps
    answering on its own handler, so ordered expectations would not do)."""
    queue = list(responses)

    def respond(_request):
        return queue.pop(0)

    return respond


def statuses(records) -> list[str]:
    return [record.crm_status for record in records if hasattr(record, "crm_status")]


def test_the_next_team_member_becomes_the_responsible_user_in_amocrm(
    crm, runtime, clock, outcomes, db_rows, reach_the_reassigning_level
):
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_json({"id": int(NATIVE), "updated_at": 1795420900})
    escalation = reach_the_reassigning_level(runtime, clock, crm)
    assert escalation.reassigned_to == "11087456"
    [request] = [request for request, _ in crm.log if request.path == AMO_PATH]
    assert request.headers["Authorization"] == f"Bearer {AMO_TOKEN}"
    assert patches(crm) == [{"responsible_user_id": 11087456}]
    assert db_rows(runtime, LeadRow)[0].owner == "11087456"
    [record] = outcomes
    assert (record.lead_id, record.escalation_id, record.crm_status) == (LEAD, escalation.id, "assigned")
    run_timer(runtime, escalation.clock_id)  # a second firing tells the CRM nothing more
    assert len(patches(crm)) == 1


def test_a_persons_crm_id_is_what_the_crm_gets(crm, runtime, clock, reach_the_reassigning_level):
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_json({"id": int(NATIVE)})
    assert reach_the_reassigning_level(runtime, clock, crm, owner="anna").reassigned_to == "boris"
    assert patches(crm) == [{"responsible_user_id": 504142}]


def test_a_rate_limited_crm_is_told_again_after_retry_after_by_the_worker(
    crm, runtime, clock, outcomes, run_worker, reach_the_reassigning_level, db_rows
):
    crm.expect_request(AMO_PATH, method="PATCH", json={"responsible_user_id": 11087456}).respond_with_handler(
        answers(
            Response("slow down", status=429, headers={"Retry-After": "7"}),
            Response(json.dumps({"id": int(NATIVE), "updated_at": 1795420900}), content_type="application/json"),
        )
    )
    escalation = reach_the_reassigning_level(runtime, clock, crm)
    [push] = db_rows(runtime, OutboxItemRow, OutboxItemRow.kind == "reassign")
    assert json.loads(push.args)["escalation_id"] == escalation.id
    retry = REASSIGNMENTS.job_id(runtime.queue_name, push.id, 2)
    assert reassign_jobs(runtime) == {retry: (clock() + timedelta(seconds=7)).timestamp()}
    assert statuses(outcomes) == ["retrying"] and AMO_TOKEN not in outcomes[0].error
    clock.advance(seconds=3)
    run_scheduler(runtime, clock())
    run_worker(runtime)
    assert len(patches(crm)) == 1  # still inside Retry-After
    clock.advance(seconds=5)
    run_scheduler(runtime, clock())
    run_worker(runtime)
    assert patches(crm) == [{"responsible_user_id": 11087456}] * 2
    assert statuses(outcomes) == ["retrying", "assigned"] and outcomes[-1].attempt == 2
    assert reassign_jobs(runtime) == {}


def test_a_retry_never_takes_the_lead_back_from_a_newer_owner(
    crm, runtime, clock, outcomes, event, run_worker, reach_the_reassigning_level, store_events
):
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_handler(answers(Response("busy", status=503)))
    escalation = reach_the_reassigning_level(runtime, clock, crm)
    clock.advance(seconds=1)  # someone in amoCRM gives the lead back before the retry
    store_events(runtime, "amocrm", event("a", "lead.assigned", clock(), lead_id=LEAD, lead={"owner": "11087123"}))
    clock.advance(seconds=2)
    run_scheduler(runtime, clock())
    run_worker(runtime)
    assert len(patches(crm)) == 1
    assert statuses(outcomes) == ["retrying", "superseded"] and escalation.reassigned_to == "11087456"


@pytest.mark.parametrize("status, headers, max_attempts", [(401, {}, 8), (400, {}, 8), (429, {"Retry-After": "1"}, 1)])
def test_a_refusal_or_the_last_attempt_is_an_error_without_retry(
    crm, runtime, clock, outcomes, settings, status, headers, max_attempts, reach_the_reassigning_level, db_rows
):
    runtime.settings = runtime.settings.replace(alert_max_attempts=max_attempts)
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_data(
        json.dumps({"title": "refused", "status": status, "detail": f"token {AMO_TOKEN}"}),
        status=status,
        headers=headers,
        content_type="application/problem+json",
    )
    reach_the_reassigning_level(runtime, clock, crm)
    [record] = outcomes
    assert (record.levelno, record.crm_status) == (logging.ERROR, "failed")
    assert AMO_TOKEN not in record.error and AMO_TOKEN not in record.getMessage()
    assert reassign_jobs(runtime) == {}
    assert db_rows(runtime, LeadRow)[0].owner == "11087456"  # sla-guard's own reassignment stands


def test_a_generic_webhook_lead_is_reassigned_without_a_crm_call(
    crm, runtime, clock, outcomes, reach_the_reassigning_level, db_rows
):
    escalation = reach_the_reassigning_level(runtime, clock, crm, source="generic", lead_id="L-1001")
    assert escalation.reassigned_to == "11087456" and db_rows(runtime, LeadRow)[0].owner == "11087456"
    assert [request.path for request, _ in crm.log if request.path != "/alerts"] == []
    assert statuses(outcomes) == ["not_supported"] and all(r.levelno < logging.WARNING for r in outcomes)
    assert tell_crm(runtime, "L-1001", "11087456", escalation.id) == "not_supported"


def test_a_crashing_crm_call_does_not_break_the_timer(
    crm, runtime, clock, monkeypatch, reach_the_reassigning_level, db_rows
):
    def crash(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(REASSIGNMENTS, "run", crash)
    escalation = reach_the_reassigning_level(runtime, clock, crm)
    assert escalation.reassigned_to == "11087456" and db_rows(runtime, LeadRow)[0].owner == "11087456"


def test_killing_redis_with_a_reassignment_pending_loses_it_not(
    crm, runtime, clock, outcomes, killable_redis, reach_the_reassigning_level, run_worker
):
    runtime.redis = Redis.from_url(killable_redis.url)
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_handler(
        answers(
            Response("busy", status=503),
            Response(json.dumps({"id": int(NATIVE), "updated_at": 1795420900}), content_type="application/json"),
        )
    )
    reach_the_reassigning_level(runtime, clock, crm)
    assert statuses(outcomes) == ["retrying"] and len(reassign_jobs(runtime)) == 1
    killable_redis.restart_empty()  # the scheduled retry is gone with it
    assert reassign_jobs(runtime) == {}
    clock.advance(seconds=3)
    assert reconcile(runtime).crm_pushes_retried == 1
    run_worker(runtime)
    assert patches(crm) == [{"responsible_user_id": 11087456}] * 2
    assert statuses(outcomes) == ["retrying", "assigned"]
    assert reconcile(runtime).crm_pushes_retried == 0


def test_jobs_an_older_version_queued_by_dotted_path_are_carried_over_on_upgrade(
    crm, runtime, clock, outcomes, run_worker, db_rows, store_events, event
):
    crm.expect_request(AMO_PATH, method="PATCH").respond_with_json({"id": int(NATIVE), "updated_at": 1795420900})
    store_events(runtime, "amocrm", event("c", "lead.created", clock(), lead_id=LEAD, lead={"owner": "11087456"}))
    queue = Queue(runtime.queue_name, connection=runtime.redis)
    # what an older sla-guard left in Redis: a reassignment push waiting for its retry, a loss-reason
    # read and a delivery queued under workers.jobs.*, names this version no longer has
    queue.enqueue_at(clock() + timedelta(seconds=30), "workers.jobs.reassign_in_crm", LEAD, "11087456", 77, 2)
    queue.enqueue("workers.jobs.amocrm_loss_reason", LEAD, "amocrm-leads-status-15318175-1795420900")
    queue.enqueue("workers.jobs.deliver_alert", 5)
    # and jobs of the package that a later version moved or dropped; a job this version has stays
    queue.enqueue("sla_guard.timers.loop.fire_due_clocks", [3], 1795420930.0)
    queue.enqueue("sla_guard.outbox.base.deliver_ops_alert", 4)
    current = queue.enqueue("sla_guard.outbox.delivery.deliver_alert", 6)
    found = carry_over(runtime, [runtime.queue_name])
    assert found == {
        "reassign_in_crm": 1,
        "amocrm_loss_reason": 1,
        "deliver_alert": 1,
        "sla_guard.timers.loop.fire_due_clocks": 1,
        "sla_guard.outbox.base.deliver_ops_alert": 1,
    }
    assert queue.get_job_ids() == [current.id]  # no job this version cannot run is left
    current.delete()
    assert queue.count == 0 and scheduled(runtime) == {}
    items = {row.kind: json.loads(row.args) for row in db_rows(runtime, OutboxItemRow)}
    assert items == {
        "reassign": {"lead_id": LEAD, "owner": "11087456", "escalation_id": 77},
        "loss-reason": {"lead_id": LEAD, "event_id": "amocrm-leads-status-15318175-1795420900"},
    }
    assert carry_over(runtime, [runtime.queue_name]) == {}  # a second start finds nothing more
    clock.advance(seconds=6)
    reconcile(runtime)
    run_worker(runtime)
    assert patches(crm) == [{"responsible_user_id": 11087456}]  # the reassignment reached the CRM
    assert statuses(outcomes) == ["assigned"]
