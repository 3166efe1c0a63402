"""Follow-up tasks in amoCRM / Kommo over API v4.

- create: ``POST /api/v4/tasks`` with a JSON *array* of one task: ``text``, ``complete_till``
  (unix seconds), ``entity_id`` + ``entity_type: "leads"``, ``responsible_user_id``,
  ``task_type_id`` (1, the standard follow-up/call type, unless
  ``SLA_GUARD_AMOCRM_TASK_TYPE_ID`` says otherwise) and ``request_id``. The answer's
  ``_embedded.tasks[0].id`` is the task id. amoCRM only echoes ``request_id`` back and does
  not store it, so it cannot deduplicate; the key is also put in the text as a marker line.
- find: ``GET /api/v4/tasks?filter[entity_type]=leads&filter[entity_id]=<lead>`` (newest
  first, 250 per page; an empty list is ``204 No Content``), matching the marker in ``text``.
- close: ``PATCH /api/v4/tasks/<id>`` with ``{"is_completed": true, "result": {"text": …}}``.
  amoCRM's API cannot delete tasks, so a cancelled step is completed with that result text.
- status: ``GET /api/v4/tasks/<id>`` → ``is_completed``.
- assign_owner: ``PATCH /api/v4/leads/<id>`` with ``{"responsible_user_id": <user id>}``
  (amoCRM has leads only, so the kind is not used).

Without an owner the lead's ``responsible_user_id`` is read (``GET /api/v4/leads/<id>``):
amoCRM would otherwise assign the task to the token's user. Auth is
``Authorization: Bearer <long-lived token>``. amoCRM allows about 7 requests per second and
answers 429 beyond; errors come as ``application/problem+json`` (``title``, ``detail``,
``validation-errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from sla_guard.exceptions import ConfigError, TaskError, TaskNotFound
from sla_guard.outbox.crm_tasks.base import (
    CLOSE_NOTE,
    DEFAULT_TIMEOUT,
    RestTasks,
    TaskRequest,
    Timeout,
    marked_task,
    setting,
    with_marker,
)
from sla_guard.outbox.http import json_body

CRM = "amoCRM"
BASE_URL = "SLA_GUARD_AMOCRM_BASE_URL"
ACCESS_TOKEN = "SLA_GUARD_AMOCRM_ACCESS_TOKEN"
TASK_TYPE_ID = "SLA_GUARD_AMOCRM_TASK_TYPE_ID"
FOLLOW_UP_TYPE = 1
"""amoCRM's standard task type 1 (follow-up / call)."""
PAGE = 250
"""The largest page amoCRM serves."""
_RATE_WAIT_S = 1.0
"""amoCRM's limit is per second; without ``Retry-After`` wait one second."""


class AmoCrmTasks(RestTasks):
    """Task client for one amoCRM / Kommo account."""

    crm = CRM

    def __init__(
        self,
        base_url: str,
        access_token: str,
        session: requests.Session,
        *,
        task_type_id: int = FOLLOW_UP_TYPE,
        timeout: Timeout = DEFAULT_TIMEOUT,
    ):
        self.task_type_id = task_type_id
        bearer = {"Authorization": f"Bearer {access_token}"}
        self._open(session, timeout, base_url, access_token, ACCESS_TOKEN, account=base_url.rstrip("/"), auth=bearer)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], session: requests.Session) -> AmoCrmTasks | None:
        """The client, or ``None`` unless the base URL and the access token are set."""
        base_url, token = setting(settings, BASE_URL), setting(settings, ACCESS_TOKEN)
        if not (base_url and token):
            return None
        task_type = setting(settings, TASK_TYPE_ID) or str(FOLLOW_UP_TYPE)
        if not task_type.isdigit():
            raise ConfigError(f"{TASK_TYPE_ID} must be the numeric id of an amoCRM task type")
        return cls(base_url, token, session, task_type_id=int(task_type))

    # --- TaskClient -----------------------------------------------------------------------

    def create(self, task: TaskRequest) -> str:
        lead = self.number(task.lead_id, "the lead id")
        owner = self.number(task.owner, "the owner") if task.owner else self._responsible(lead)
        what = f"creating the task for lead {lead}"
        body = [
            {
                "text": with_marker(task.text, task.idempotency_key),
                "complete_till": int(task.due_at.timestamp()),
                "entity_id": lead,
                "entity_type": "leads",
                "responsible_user_id": owner,
                "task_type_id": self.task_type_id,
                "request_id": task.idempotency_key,
            }
        ]
        response = self._send("POST", "/api/v4/tasks", what, json=body)
        if response.status_code not in (200, 201):
            raise self._error(response, what)
        tasks = _embedded(json_body(response))
        if not tasks or tasks[0].get("id") is None:
            raise self.http.fail(f"{what}: the answer holds no task id", transient=False, status=response.status_code)
        return str(tasks[0]["id"])

    def find(self, task: TaskRequest) -> str | None:
        lead = self.number(task.lead_id, "the lead id")
        what = f"listing the tasks of lead {lead}"
        params = {
            "filter[entity_type]": "leads",
            "filter[entity_id]": str(lead),
            "order[id]": "desc",
            "limit": str(PAGE),
        }
        response = self._send("GET", "/api/v4/tasks", what, params=params)
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise self._error(response, what)
        return marked_task(_embedded(json_body(response)), task.idempotency_key, lambda item: item.get("text"))

    def close(self, task_id: str) -> None:
        number = self.number(task_id, "the task id")
        body = {"is_completed": True, "result": {"text": CLOSE_NOTE}}
        self._complete("PATCH", f"/api/v4/tasks/{number}", f"completing task {number}", done=(200, 204, 404), json=body)

    def status(self, task_id: str) -> str:
        number = self.number(task_id, "the task id")
        task = self._read(f"/api/v4/tasks/{number}", f"reading task {number}", gone=(204, 404), thing="a task")
        if task is None:
            return "gone"
        return "done" if task.get("is_completed") is True else "open"

    def assign_owner(self, lead_id: str, owner: str, kind: str = "deal") -> None:
        lead = self.number(lead_id, "the lead id")
        user = self.number(owner, "the new owner")
        what = f"setting the responsible user of lead {lead} to {user}"
        response = self._send("PATCH", f"/api/v4/leads/{lead}", what, json={"responsible_user_id": user})
        if response.status_code != 200:
            raise self._error(response, what)

    # --- helpers --------------------------------------------------------------------------

    def _responsible(self, lead: int) -> int:
        what = f"reading the responsible user of lead {lead}"
        response = self._send("GET", f"/api/v4/leads/{lead}", what)
        if response.status_code in (204, 404):
            raise TaskNotFound(CRM, f"{what}: amoCRM has no lead {lead}", status=response.status_code)
        if response.status_code != 200:
            raise self._error(response, what)
        body = json_body(response)
        owner = body.get("responsible_user_id") if isinstance(body, dict) else None
        if owner is None:
            raise self.http.fail(f"{what}: the lead has no responsible user", transient=False, status=200)
        return self.number(str(owner), "responsible_user_id")

    def _error(self, response: requests.Response, what: str) -> TaskError:
        return self.http.error(response, what, _problem(json_body(response)), retry_after_s=_RATE_WAIT_S)


def _embedded(body: Any) -> list[dict[str, Any]]:
    embedded = body.get("_embedded") if isinstance(body, dict) else None
    tasks = embedded.get("tasks") if isinstance(embedded, dict) else None
    return [item for item in tasks if isinstance(item, dict)] if isinstance(tasks, list) else []


def _problem(body: Any) -> str | None:
    """``detail`` of a problem+json answer plus its validation errors (``path: detail``)."""
    if not isinstance(body, dict):
        return None
    parts = [str(body.get("detail") or body.get("title") or "").strip()]
    for group in body.get("validation-errors") or []:
        for item in (group.get("errors") or []) if isinstance(group, dict) else []:
            if isinstance(item, dict):
                parts.append(f"{item.get('path', '?')}: {item.get('detail') or item.get('code')}")
    text = "; ".join(part for part in parts if part)
    return text or None
