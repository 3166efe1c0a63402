"""CRM clients paced through Redis by the HTTP layer, against stand-ins that answer as the real
APIs document: amoCRM's 429 then 403 (the account blocked), Bitrix24's QUERY_LIMIT_EXCEEDED as
HTTP 503."""

from __future__ import annotations

import time
import uuid

import pytest

from sla_guard.outbox.crm_tasks import AmoCrmTasks, Bitrix24Tasks
from sla_guard.outbox.http import install_pacer
from sla_guard.outbox.pacing import BLOCKED_S, CrmPacer, Pacer, crm_paces, pace_stats

TOKEN = "amo-long-lived-token-0123456789"
PROBLEM = "application/problem+json"
B24_KEY = "s3cr3tk3y0123456789"


@pytest.fixture
def pacer(redis_conn):
    """The CRM pacer installed in the HTTP layer, as a worker installs it."""
    namespace = f"pace-{uuid.uuid4().hex[:8]}"
    installed = CrmPacer(Pacer(redis_conn, namespace, max_wait_s=2.0), crm_paces({}))
    previous = install_pacer(installed)
    yield installed.pacer
    install_pacer(previous)
    keys = list(redis_conn.scan_iter(f"{namespace}:*"))
    if keys:
        redis_conn.delete(*keys)


def test_amocrm_403_after_429_is_the_account_blocked_and_every_call_backs_off(
    httpserver, session, pacer, expect, raises_task_error, verify
):
    amo = AmoCrmTasks(httpserver.url_for("/"), TOKEN, session, timeout=0.5)
    problem = {"title": "Too Many Requests", "status": 429}
    expect(httpserver, "PATCH", "/api/v4/tasks/1", status=429, reply=problem, content_type=PROBLEM)
    first = raises_task_error(lambda: amo.close("1"))
    assert first.transient and first.status == 429
    blocked = {"title": "Forbidden", "status": 403, "detail": "Account is blocked"}
    expect(httpserver, "PATCH", "/api/v4/tasks/2", status=403, reply=blocked, content_type=PROBLEM)
    second = raises_task_error(lambda: amo.close("2"))  # waits out the 429's second, then hears 403
    assert second.transient and second.retry_after_s == BLOCKED_S and "403" in str(second)
    # the account is held for every worker: the next call is not even sent
    third = raises_task_error(lambda: amo.close("3"))
    assert third.transient and third.retry_after_s > BLOCKED_S - 10 and "not sent" in str(third)
    verify(httpserver)
    assert len(httpserver.log) == 2
    stats = pace_stats(pacer.redis, pacer.namespace)["amocrm"]
    assert (stats["calls"], stats["rate_limited"], stats["deferred"]) == (2, 1, 1)


def test_amocrm_403_without_a_429_before_is_a_refusal(httpserver, session, pacer, expect, raises_task_error):
    amo = AmoCrmTasks(httpserver.url_for("/"), TOKEN, session, timeout=0.5)
    expect(httpserver, "PATCH", "/api/v4/tasks/2", status=403, reply={"status": 403}, content_type=PROBLEM)
    error = raises_task_error(lambda: amo.close("2"))
    assert not error.transient and "rights" in str(error)


def test_bitrix24_query_limit_exceeded_as_503_holds_the_portal_for_every_worker(
    httpserver, session, pacer, expect, raises_task_error, verify
):
    rest_url = httpserver.url_for(f"/rest/1/{B24_KEY}/")
    worker_a = Bitrix24Tasks(rest_url, session, timeout=0.5)
    worker_b = Bitrix24Tasks(rest_url, session, timeout=0.5)
    limit = {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    expect(httpserver, "POST", f"/rest/1/{B24_KEY}/crm.activity.get", status=503, reply=limit)
    error = raises_task_error(lambda: worker_a.status("7"))
    assert error.transient and error.status == 503 and B24_KEY not in str(error)
    expect(
        httpserver,
        "POST",
        f"/rest/1/{B24_KEY}/crm.activity.get",
        reply={"result": {"ID": "7", "COMPLETED": "Y"}, "time": {}},
    )
    started = time.monotonic()
    assert worker_b.status("7") == "done"
    assert time.monotonic() - started >= 0.9  # the other worker waited out the portal's second
    verify(httpserver)
    assert pace_stats(pacer.redis, pacer.namespace)["bitrix24"]["rate_limited"] == 1


def test_a_pace_that_cannot_be_read_is_a_transient_error_and_nothing_is_sent(httpserver, session, raises_task_error):
    from redis import Redis

    down = Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    previous = install_pacer(CrmPacer(Pacer(down, "pace-down"), crm_paces({})))
    try:
        amo = AmoCrmTasks(httpserver.url_for("/"), TOKEN, session, timeout=0.5)
        error = raises_task_error(lambda: amo.close("1"))
    finally:
        install_pacer(previous)
    assert error.transient and "pace" in str(error)
    assert httpserver.log == []


def test_plan_limits_come_from_the_settings():
    paces = crm_paces({"SLA_GUARD_HUBSPOT_CALLS_PER_10S": "190", "SLA_GUARD_PIPEDRIVE_DAILY_TOKENS": "210000"})
    assert paces["hubspot"].limits[0].calls == 190
    assert paces["pipedrive"].limits[1].tokens == 210000
    from sla_guard.exceptions import ConfigError

    with pytest.raises(ConfigError, match="SLA_GUARD_PIPEDRIVE_CALLS_PER_2S"):
        crm_paces({"SLA_GUARD_PIPEDRIVE_CALLS_PER_2S": "fast"})
