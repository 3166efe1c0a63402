"""End to end: 24 amoCRM leads fall overdue at once and each alert becomes a task in amoCRM.
Two real worker processes share the account's pace in Redis: the stand-in amoCRM, which answers
429 past 7 requests a second and then blocks the account with 403 as amoCRM does, never sees
more than 7 requests in any second, and every task is created."""

from __future__ import annotations

import textwrap
import threading
import time
from urllib.parse import urlencode

import pytest
import requests
from werkzeug.wrappers import Request, Response

from tests.support.processes import PATIENCE_S, wait_for

pytestmark = pytest.mark.e2e

ACCOUNT = "30307558"
PATH_TOKEN = "amo-path-token-0123456789"
OWNER = "11087123"
LEADS = 24

RULES = textwrap.dedent(f"""
    timezone: UTC
    channels:
      amo-tasks: {{type: crm, crm: amocrm, due_in: 1h}}
    people:
      "{OWNER}": {{channels: [amo-tasks]}}
    rules:
      - name: inbound
        first_touch: {{within: 2s, escalate: [{{after: 0s, notify: [owner]}}]}}
""")


class StandInAmoCrm:
    """amoCRM's API v4 as documented: at most 7 requests a second per account, 429 beyond,
    and the account blocked (403) once it keeps going after 429s."""

    def __init__(self):
        self.arrivals: list[float] = []
        self.statuses: list[int] = []
        self.tasks: list[dict] = []
        self.lock = threading.Lock()

    def install(self, server) -> StandInAmoCrm:
        server.expect_request("/api/v4/tasks", method="GET").respond_with_handler(self.handle)
        server.expect_request("/api/v4/tasks", method="POST").respond_with_handler(self.handle)
        for number in range(1, LEADS + 1):
            server.expect_request(f"/api/v4/leads/{number}", method="GET").respond_with_handler(self.handle)
        return self

    def answer(self, request: Request) -> Response:
        now = time.monotonic()
        self.arrivals.append(now)
        if self.statuses.count(429) >= 2:
            return Response(
                '{"title": "Forbidden", "status": 403}', status=403, content_type="application/problem+json"
            )
        if sum(1 for at in self.arrivals if now - 1.0 < at <= now) > 7:
            return Response('{"title": "Too Many Requests"}', status=429, content_type="application/problem+json")
        if request.method == "GET" and request.path.startswith("/api/v4/leads/"):
            return Response(f'{{"id": {request.path.rsplit("/", 1)[1]}, "responsible_user_id": {OWNER}}}')
        if request.method == "GET":
            return Response(status=204)
        [task] = request.get_json()
        self.tasks.append(task)
        return Response(f'{{"_embedded": {{"tasks": [{{"id": {len(self.tasks)}}}]}}}}', content_type="application/json")

    def handle(self, request: Request) -> Response:
        with self.lock:
            response = self.answer(request)
            self.statuses.append(response.status_code)
            return response

    def most_in_one_second(self) -> int:
        arrivals = sorted(self.arrivals)
        return max(sum(1 for other in arrivals if at <= other < at + 1.0) for at in arrivals)


@pytest.fixture
def amocrm(httpserver):
    return StandInAmoCrm().install(httpserver)


@pytest.fixture
def stack(start_stack, httpserver, amocrm):
    """`serve` and two `worker` processes sharing the account's pace."""
    return start_stack(
        RULES,
        workers=2,
        SLA_GUARD_AMOCRM_TOKEN=PATH_TOKEN,
        SLA_GUARD_AMOCRM_ACCOUNT_ID=ACCOUNT,
        SLA_GUARD_AMOCRM_BASE_URL=httpserver.url_for("/").rstrip("/"),
        SLA_GUARD_AMOCRM_ACCESS_TOKEN="amo-access-token-0123456789",
    )


def test_a_burst_of_24_overdue_leads_makes_at_most_7_amocrm_calls_in_any_second(stack, amocrm):
    created = int(time.time())
    fields = {"account[subdomain]": "acmesales", "account[id]": ACCOUNT}
    for number in range(1, LEADS + 1):
        item = {"id": number, "name": f"Lead {number}", "status_id": "1", "pipeline_id": "1"}
        item.update({"responsible_user_id": OWNER, "created_at": created, "account_id": ACCOUNT})
        fields.update({f"leads[add][{number - 1}][{key}]": value for key, value in item.items()})
    response = requests.post(
        f"{stack.base_url}/webhooks/amocrm/{PATH_TOKEN}",
        data=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert len(stack.workers) == 2
    assert wait_for(lambda: len(amocrm.tasks) >= LEADS, 3 * PATIENCE_S), stack.logs("worker")
    assert sorted(task["entity_id"] for task in amocrm.tasks) == list(range(1, LEADS + 1))
    assert 429 not in amocrm.statuses and 403 not in amocrm.statuses
    assert amocrm.most_in_one_second() <= 7
