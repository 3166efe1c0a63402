"""Follow-up tasks in HubSpot over the CRM v3 objects API.

- create: ``POST /crm/v3/objects/tasks`` with ``properties`` (``hs_timestamp`` = due time in
  epoch milliseconds, ``hs_task_subject``, ``hs_task_body`` = text + marker line,
  ``hs_task_status: NOT_STARTED``, ``hs_task_priority: MEDIUM``, ``hs_task_type: TODO``,
  ``hubspot_owner_id``) and one association to the record with HubSpot's default type:
  216 task → deal for a deal, 204 task → contact for a lead (sla-guard's HubSpot leads are
  contacts or deals). ``201`` answers the task with its ``id``. Property values are sent as
  strings, as in the API's schema.
- find: ``POST /crm/v3/objects/tasks/search`` filtered on ``associations.deal`` /
  ``associations.contact`` = the record, newest first, matching the marker in
  ``hs_task_body``. HubSpot's search index lags creation by a few seconds.
- close: ``PATCH /crm/v3/objects/tasks/<id>`` with ``hs_task_status: COMPLETED``.
- status: ``GET /crm/v3/objects/tasks/<id>?properties=hs_task_status``; 404 or archived → gone.
- assign_owner: ``PATCH /crm/v3/objects/deals/<id>`` (``contacts`` for a lead) with
  ``{"properties": {"hubspot_owner_id": "<owner id>"}}`` (needs the deals/contacts write scope).

Without an owner the record's ``hubspot_owner_id`` is read: an unassigned HubSpot task
would reach nobody. Auth is ``Authorization: Bearer <private app token>`` (scopes
``crm.objects.contacts.read/write`` for tasks, plus read of deals). A 429 body names its
``policyName``: per-second limits are retried after the interval HubSpot reports, the daily
limit (reset at midnight in the account's time zone) after an hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from sla_guard.exceptions import TaskError
from sla_guard.outbox.crm_tasks.base import (
    TaskRequest,
    TokenTasks,
    html_with_marker,
    marked_task,
    subject,
)
from sla_guard.outbox.http import json_body

CRM = "HubSpot"
ACCESS_TOKEN = "SLA_GUARD_HUBSPOT_ACCESS_TOKEN"
API_URL = "SLA_GUARD_HUBSPOT_API_URL"
DEFAULT_API_URL = "https://api.hubapi.com"
OBJECTS = {"deal": "deals", "contact": "contacts"}
"""The HubSpot objects sla-guard's leads can be and tasks attach to (HubSpot's own *lead*
object is not one of them: its follow-ups go to the owner as alerts)."""
ASSOCIATION_TYPES = {"deal": 216, "contact": 204}
"""HUBSPOT_DEFINED association type ids: task → deal 216, task → contact 204."""
SEARCH_KEYS = {"deal": "associations.deal", "contact": "associations.contact"}
PRIORITY = "MEDIUM"

_DAILY_WAIT_S = 3600.0


class HubSpotTasks(TokenTasks):
    """Task client for one HubSpot account (a private app's access token)."""

    crm = CRM
    token_setting = ACCESS_TOKEN
    api_url_setting = API_URL
    default_api_url = DEFAULT_API_URL

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    # --- TaskClient -----------------------------------------------------------------------

    def create(self, task: TaskRequest) -> str:
        _object(task.kind)
        record = str(self.number(task.lead_id, f"the {task.kind} id"))
        owner = str(self.number(task.owner, "the owner")) if task.owner else self._owner(task.kind, record)
        body = {
            "properties": {
                "hs_timestamp": str(int(task.due_at.timestamp() * 1000)),
                "hs_task_subject": subject(task.text),
                "hs_task_body": html_with_marker(task.text, task.idempotency_key),
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": PRIORITY,
                "hs_task_type": "TODO",
                "hubspot_owner_id": owner,
            },
            "associations": [
                {
                    "to": {"id": record},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": ASSOCIATION_TYPES[task.kind]}
                    ],
                }
            ],
        }
        what = f"creating the task for {task.kind} {record}"
        response = self._send("POST", "/crm/v3/objects/tasks", what, json=body)
        if response.status_code not in (200, 201):
            raise self._error(response, what)
        created = json_body(response)
        if not isinstance(created, dict) or created.get("id") is None:
            raise self.http.fail(f"{what}: the answer holds no task id", transient=False, status=response.status_code)
        return str(created["id"])

    def find(self, task: TaskRequest) -> str | None:
        _object(task.kind)
        record = str(self.number(task.lead_id, f"the {task.kind} id"))
        body = {
            "filterGroups": [
                {"filters": [{"propertyName": SEARCH_KEYS[task.kind], "operator": "EQ", "value": record}]}
            ],
            "properties": ["hs_task_body", "hs_task_status"],
            "sorts": [{"propertyName": "hs_createdate", "direction": "DESCENDING"}],
            "limit": 100,
        }
        what = f"searching the tasks of {task.kind} {record}"
        response = self._send("POST", "/crm/v3/objects/tasks/search", what, json=body)
        if response.status_code != 200:
            raise self._error(response, what)
        found = json_body(response)
        results = found.get("results") if isinstance(found, dict) else None
        return marked_task(results, task.idempotency_key, _task_body)

    def close(self, task_id: str) -> None:
        number = self.number(task_id, "the task id")
        body = {"properties": {"hs_task_status": "COMPLETED"}}
        self._complete(
            "PATCH", f"/crm/v3/objects/tasks/{number}", f"completing task {number}", done=(200, 204), json=body
        )

    def status(self, task_id: str) -> str:
        number = self.number(task_id, "the task id")
        task = self._read(
            f"/crm/v3/objects/tasks/{number}",
            f"reading task {number}",
            gone=(404, 410),
            thing="a task",
            params={"properties": "hs_task_status"},
        )
        if task is None or task.get("archived") is True:
            return "gone"
        properties = task.get("properties") if isinstance(task.get("properties"), dict) else {}
        return "done" if properties.get("hs_task_status") == "COMPLETED" else "open"

    def assign_owner(self, lead_id: str, owner: str, kind: str = "deal") -> None:
        objects = _object(self.record_kind(kind))
        record = self.number(lead_id, f"the {kind} id")
        user = self.number(owner, "the new owner")
        what = f"setting the owner of {kind} {record} to {user}"
        response = self._send(
            "PATCH", f"/crm/v3/objects/{objects}/{record}", what, json={"properties": {"hubspot_owner_id": str(user)}}
        )
        if response.status_code != 200:
            raise self._error(response, what)

    # --- helpers --------------------------------------------------------------------------

    def _owner(self, kind: str, record: str) -> str:
        what = f"reading the owner of {kind} {record}"
        response = self._send(
            "GET", f"/crm/v3/objects/{OBJECTS[kind]}/{record}", what, params={"properties": "hubspot_owner_id"}
        )
        if response.status_code != 200:
            raise self._error(response, what)
        body = json_body(response)
        properties = body.get("properties") if isinstance(body, dict) else None
        owner = properties.get("hubspot_owner_id") if isinstance(properties, dict) else None
        if not owner:
            raise self.http.fail(f"{what}: the record has no owner", transient=False, status=200)
        return str(owner)

    def _error(self, response: requests.Response, what: str) -> TaskError:
        body = json_body(response)
        body = body if isinstance(body, dict) else {}
        detail = " ".join(str(body[key]) for key in ("category", "message") if body.get(key)) or None
        return self.http.error(response, what, detail, retry_after_s=_rate_wait(response, body))


def _task_body(task: dict) -> Any:
    properties = task.get("properties")
    return properties.get("hs_task_body") if isinstance(properties, dict) else None


def _object(kind: str) -> str:
    """The HubSpot object of a kind of record; a permanent :class:`TaskError` for one without."""
    if kind not in OBJECTS:
        raise TaskError(CRM, f"tasks attach to deals and contacts, not to a HubSpot {kind}", transient=False)
    return OBJECTS[kind]


def _rate_wait(response: requests.Response, body: Mapping[str, Any]) -> float | None:
    """How long a 429 asks to wait when it has no ``Retry-After``: by the limit it hit."""
    if response.status_code != 429:
        return None
    if str(body.get("policyName") or "").upper() == "DAILY":
        return _DAILY_WAIT_S
    interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    try:
        return max(0.1, float(interval) / 1000) if interval else 1.0
    except ValueError:
        return 1.0
