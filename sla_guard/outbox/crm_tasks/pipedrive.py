"""Follow-up tasks in Pipedrive as activities of type ``task``, over API v2.

Pipedrive's API v1 activity and deal endpoints are out of support since 2026-08-01 and may
answer 410 Gone at any time, so every call that has a v2 equivalent uses API v2:

- create: ``POST /api/v2/activities`` with ``subject``, ``type`` (``task``, or
  ``SLA_GUARD_PIPEDRIVE_TASK_TYPE``), ``due_date`` (``YYYY-MM-DD``) and ``due_time``
  (``HH:MM``), both in UTC as Pipedrive expects, ``deal_id`` (a number) or ``lead_id`` (a
  UUID), ``owner_id``, ``done: false`` and ``note`` (HTML: text + marker line); the answer is
  ``{"success": true, "data": {"id": …}}``.
- find: ``GET /api/v2/activities?deal_id=<id>`` (or ``lead_id=<uuid>``), 500 a page, following
  ``additional_data.next_cursor``, matching the marker in ``note``.
- close: ``PATCH /api/v2/activities/<id>`` with ``{"done": true}``.
- status: ``GET /api/v2/activities/<id>`` → ``done``; 404/410 or ``is_deleted`` → gone.
- assign_owner: ``PATCH /api/v2/deals/<id>`` with ``{"owner_id": <user id>}``. Leads have no
  API v2 yet, so for a lead it is ``PATCH /api/v1/leads/<uuid>`` with ``{"owner_id": …}``.

Without an owner the record's owner is read (``GET /api/v2/deals/<id>`` or
``GET /api/v1/leads/<uuid>`` → ``owner_id``): Pipedrive would otherwise assign the activity
to the token's user. ``SLA_GUARD_PIPEDRIVE_API_URL`` is the API's base,
``https://api.pipedrive.com/api`` by default or ``https://<company>.pipedrive.com/api`` (a base
without the final ``/api`` gets it). The token goes in the ``x-api-token`` header, never in
the URL. Rate limits are per 2-second window (``x-ratelimit-reset`` says when it resets) plus
a daily token budget counted in UTC; both answer 429.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import requests

from sla_guard.exceptions import TaskError
from sla_guard.outbox.crm_tasks.base import (
    TaskRequest,
    TokenTasks,
    html_with_marker,
    marked_task,
    numeric_id,
    setting,
    subject,
)
from sla_guard.outbox.http import json_body

CRM = "Pipedrive"
API_TOKEN = "SLA_GUARD_PIPEDRIVE_API_TOKEN"
API_URL = "SLA_GUARD_PIPEDRIVE_API_URL"
TASK_TYPE = "SLA_GUARD_PIPEDRIVE_TASK_TYPE"
DEFAULT_API_URL = "https://api.pipedrive.com/api"
DEFAULT_TASK_TYPE = "task"
_WINDOW_S = 2.0
"""Pipedrive's rate-limit window."""
PAGE = 500
"""The largest page of API v2 lists."""
MAX_PAGES = 10
"""Pages of a record's activities read when looking for a task sla-guard created."""


def token_cost(method: str, url: str) -> int:
    """What a call spends of the daily budget, by Pipedrive's published costs: reading one
    record 2 tokens, a list 20, a change 10 (API v2 endpoints cost no more)."""
    if method.upper() != "GET":
        return 10
    last = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return 2 if last.isdigit() or len(last) == 36 else 20


class PipedriveTasks(TokenTasks):
    """Task client for one Pipedrive company (an API token)."""

    crm = CRM
    token_setting = API_TOKEN
    api_url_setting = API_URL
    default_api_url = DEFAULT_API_URL

    def __init__(self, api_token: str, session: requests.Session, *, task_type: str = DEFAULT_TASK_TYPE, **kwargs: Any):
        """``kwargs``: the ``api_url`` and ``timeout`` of :class:`~.base.TokenTasks`."""
        self.task_type = task_type
        super().__init__(api_token, session, **kwargs)

    @classmethod
    def options(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {"task_type": setting(settings, TASK_TYPE) or DEFAULT_TASK_TYPE}

    def api_base(self, api_url: str) -> str:
        """The API's base always ends in ``/api``."""
        base = api_url.rstrip("/")
        return base if base.endswith("/api") else f"{base}/api"

    def auth(self, token: str) -> dict[str, str]:
        return {"x-api-token": token}

    def pacing(self) -> dict[str, Any]:
        return {"cost": token_cost}

    # --- TaskClient -----------------------------------------------------------------------

    def create(self, task: TaskRequest) -> str:
        field, record = _record(task)
        owner = self.number(task.owner, "the owner") if task.owner else self._owner(task.kind, record)
        body = {
            "subject": subject(task.text, 255),
            "type": self.task_type,
            "due_date": task.due_at.strftime("%Y-%m-%d"),
            "due_time": task.due_at.strftime("%H:%M"),
            field: record,
            "owner_id": owner,
            "done": False,
            "note": html_with_marker(task.text, task.idempotency_key),
        }
        what = f"creating the activity for {task.kind} {record}"
        response = self._send("POST", "/v2/activities", what, json=body)
        if response.status_code not in (200, 201):
            raise self._error(response, what)
        data = _data(json_body(response))
        if not isinstance(data, dict) or data.get("id") is None:
            raise self.http.fail(
                f"{what}: the answer holds no activity id", transient=False, status=response.status_code
            )
        return str(data["id"])

    def find(self, task: TaskRequest) -> str | None:
        field, record = _record(task)
        params = {field: str(record), "limit": str(PAGE)}
        what = f"listing the activities of {task.kind} {record}"
        for _ in range(MAX_PAGES):
            response = self._send("GET", "/v2/activities", what, params=params)
            if response.status_code != 200:
                raise self._error(response, what)
            body = json_body(response)
            items = _data(body)
            found = marked_task(
                items,
                task.idempotency_key,
                lambda item: item.get("note"),
                also=lambda item: _same(item.get(field), record),
            )
            if found is not None:
                return found
            more = body.get("additional_data") if isinstance(body, dict) else None
            cursor = more.get("next_cursor") if isinstance(more, dict) else None
            if not cursor:
                return None
            params = {**params, "cursor": str(cursor)}
        return None

    def close(self, task_id: str) -> None:
        number = self.number(task_id, "the activity id")
        what = f"marking activity {number} done"
        self._complete("PATCH", f"/v2/activities/{number}", what, done=(200,), json={"done": True})

    def status(self, task_id: str) -> str:
        number = self.number(task_id, "the activity id")
        what = f"reading activity {number}"
        data = self._read(f"/v2/activities/{number}", what, gone=(404, 410), thing="an activity", unwrap=_data)
        if data is None or data.get("is_deleted") is True:
            return "gone"
        return "done" if data.get("done") in (True, 1, "1") else "open"

    def assign_owner(self, lead_id: str, owner: str, kind: str = "deal") -> None:
        kind = self.record_kind(kind)
        record = _record_id(kind, lead_id)
        user = self.number(owner, "the new owner")
        what = f"setting the owner of {kind} {record} to {user}"
        path = f"/v2/deals/{record}" if kind == "deal" else f"/v1/leads/{record}"
        response = self._send("PATCH", path, what, json={"owner_id": user})
        if response.status_code != 200:
            raise self._error(response, what)

    # --- helpers --------------------------------------------------------------------------

    def _owner(self, kind: str, record: int | str) -> int:
        path = f"/v2/deals/{record}" if kind == "deal" else f"/v1/leads/{record}"
        what = f"reading the owner of {kind} {record}"
        response = self._send("GET", path, what)
        if response.status_code != 200:
            raise self._error(response, what)
        data = _data(json_body(response))
        owner = data.get("owner_id") if isinstance(data, dict) else None
        if owner in (None, "", 0):
            raise self.http.fail(f"{what}: the record has no owner", transient=False, status=200)
        return self.number(str(owner), "owner_id")

    def _error(self, response: requests.Response, what: str) -> TaskError:
        body = json_body(response)
        detail = str(body.get("error") or "").strip() if isinstance(body, dict) else ""
        return self.http.error(response, what, detail or None, retry_after_s=rate_wait(response))


def _record(task: TaskRequest) -> tuple[str, int | str]:
    """``("deal_id", 42)`` or ``("lead_id", "<uuid>")``."""
    return f"{task.kind}_id", _record_id(task.kind, task.lead_id)


def _record_id(kind: str, lead_id: str) -> int | str:
    """A deal's number, or a lead's UUID (Pipedrive leads are UUIDs, deals whole numbers)."""
    if kind == "deal":
        return numeric_id(lead_id, CRM, "the deal id")
    try:
        return str(uuid.UUID(str(lead_id).strip()))
    except ValueError:
        raise TaskError(CRM, f"the lead id must be a UUID, got {str(lead_id)[:40]!r}", transient=False) from None


def _same(value: Any, record: int | str) -> bool:
    return value is not None and str(value).lower() == str(record).lower()


def _data(body: Any) -> Any:
    return body.get("data") if isinstance(body, dict) else None


def rate_wait(response: requests.Response) -> float | None:
    """How long a 429 asks to wait without ``Retry-After``: the window, or the day's end (UTC)."""
    if response.status_code != 429:
        return None
    if (response.headers.get("x-daily-requests-left") or "").strip() == "0":
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), time(), tzinfo=UTC)
        return (midnight - now).total_seconds()
    reset = response.headers.get("x-ratelimit-reset")
    try:
        return max(0.0, float(reset)) if reset else _WINDOW_S
    except ValueError:
        return _WINDOW_S
