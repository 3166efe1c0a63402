"""Follow-up tasks in Bitrix24 as CRM to-dos (universal activities), over the incoming webhook.

Why ``crm.activity.todo.add`` and not ``tasks.task.add``: a to-do lives in the lead's or
deal's timeline and in the manager's CRM "to-dos" counter, where sales work happens; it binds
to its record directly (``ownerTypeId`` 1 lead / 2 deal, ``ownerId``), and it needs only the
``crm`` permission the incoming webhook already has for the read-backs, whereas a task of the
Tasks module needs the ``task`` scope and binds to the CRM through ``UF_CRM_TASK`` ("D_10").

- create: ``crm.activity.todo.add`` with ``ownerTypeId``, ``ownerId``, ``deadline`` (ISO 8601
  with offset, UTC), ``title``, ``description`` (text + marker line) and ``responsibleId``;
  the answer's ``result.id`` is the activity id.
- find: ``crm.activity.list`` filtered on the owner and ``PROVIDER_ID = CRM_TODO``, newest
  first (50 a page), matching the marker in ``DESCRIPTION``.
- close: ``crm.activity.update`` with ``fields.COMPLETED = "Y"``: the to-do methods have no
  "complete" call.
- status: ``crm.activity.get`` → ``COMPLETED`` ``Y``/``N``; "Not found" → gone.

- assign_owner: ``crm.lead.update`` / ``crm.deal.update`` with ``fields.ASSIGNED_BY_ID`` and
  ``params.REGISTER_SONET_EVENT = "Y"``, so the new responsible user is notified as after a
  reassignment made in the portal.

Without an owner the record's ``ASSIGNED_BY_ID`` is read (``crm.lead.get`` / ``crm.deal.get``).
Every call is ``POST <SLA_GUARD_BITRIX24_REST_URL><method>`` with a JSON body. Errors come as
``{"error": …, "error_description": …}``: ``QUERY_LIMIT_EXCEEDED`` (HTTP 503, more than about
2 requests a second) and other 5xx are transient; ``OVERLOAD_LIMIT`` is a manual block that
only Bitrix24 support lifts, so it is permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from sla_guard.exceptions import TaskError, TaskNotFound
from sla_guard.outbox.crm_tasks.base import (
    DEFAULT_TIMEOUT,
    CrmTasks,
    TaskRequest,
    Timeout,
    marked_task,
    setting,
    subject,
    with_marker,
)
from sla_guard.outbox.http import bitrix24_query_limit_exceeded, json_body

CRM = "Bitrix24"
REST_URL = "SLA_GUARD_BITRIX24_REST_URL"
OWNER_TYPES = {"lead": 1, "deal": 2}
"""``ownerTypeId`` of the CRM records a to-do is bound to."""
READ_METHODS = {"lead": "crm.lead.get", "deal": "crm.deal.get"}
UPDATE_METHODS = {"lead": "crm.lead.update", "deal": "crm.deal.update"}
_RATE_WAIT_S = 1.0
"""Bitrix24's leaky bucket refills about two requests a second."""


_TRANSIENT = {"QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"}
_AUTH = {"NO_AUTH_FOUND", "INVALID_CREDENTIALS", "EXPIRED_TOKEN", "INVALID_TOKEN", "WRONG_AUTH_TYPE", "INVALID_REQUEST"}
_NOT_FOUND = {"NOT_FOUND", "ERROR_NOT_FOUND"}
_REFUSALS = {
    "OVERLOAD_LIMIT": "Bitrix24 blocked this webhook for overload; only Bitrix24 support can lift the block",
    "INSUFFICIENT_SCOPE": "the incoming webhook lacks the CRM (crm) permission",
    "METHOD_NOT_FOUND": "the portal does not know this method (is the portal up to date?)",
    "PAYMENT_REQUIRED": "the portal's plan does not include the REST API",
}
"""Error codes retrying cannot fix, and what each means for the person setting the portal up."""


def _refusal(code: str) -> str | None:
    """What a permanent error code means (``None``: not one of them)."""
    if code in _AUTH:
        return f"the portal refused the incoming webhook ({code}): check {REST_URL}"
    return _REFUSALS.get("METHOD_NOT_FOUND" if code.startswith("ERROR_METHOD_NOT_FOUND") else code)


class Bitrix24Tasks(CrmTasks):
    """Task client for one Bitrix24 portal (its incoming webhook)."""

    crm = CRM

    def __init__(
        self,
        rest_url: str,
        session: requests.Session,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
    ):
        self.rest_url = rest_url.rstrip("/")
        key = urlsplit(self.rest_url).path.rstrip("/").rsplit("/", 1)[-1]
        self.http = self.connect(
            session, timeout, [self.rest_url, key], REST_URL, self.rest_url, limited=bitrix24_query_limit_exceeded
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], session: requests.Session) -> Bitrix24Tasks | None:
        """The client, or ``None`` unless ``SLA_GUARD_BITRIX24_REST_URL`` is set."""
        rest_url = setting(settings, REST_URL)
        return cls(rest_url, session) if rest_url else None

    # --- TaskClient -----------------------------------------------------------------------

    def create(self, task: TaskRequest) -> str:
        owner_id = self.number(task.lead_id, f"the {task.kind} id")
        responsible = self.number(task.owner, "the owner") if task.owner else self._responsible(task.kind, owner_id)
        params = {
            "ownerTypeId": OWNER_TYPES[task.kind],
            "ownerId": owner_id,
            "deadline": task.due_at.isoformat(timespec="seconds"),
            "title": subject(task.text),
            "description": with_marker(task.text, task.idempotency_key),
            "responsibleId": responsible,
        }
        what = f"crm.activity.todo.add on {task.kind} {owner_id}"
        result = self._call("crm.activity.todo.add", params, what)
        if not isinstance(result, dict) or result.get("id") is None:
            raise self.http.fail(f"{what}: the answer holds no activity id", transient=False)
        return str(result["id"])

    def find(self, task: TaskRequest) -> str | None:
        owner_id = self.number(task.lead_id, f"the {task.kind} id")
        params = {
            "filter": {"OWNER_TYPE_ID": OWNER_TYPES[task.kind], "OWNER_ID": owner_id, "PROVIDER_ID": "CRM_TODO"},
            "select": ["ID", "DESCRIPTION", "COMPLETED"],
            "order": {"ID": "DESC"},
        }
        result = self._call("crm.activity.list", params, f"crm.activity.list on {task.kind} {owner_id}")
        return marked_task(result, task.idempotency_key, lambda item: item.get("DESCRIPTION"), id_field="ID")

    def close(self, task_id: str) -> None:
        number = self.number(task_id, "the activity id")
        try:
            self._call(
                "crm.activity.update",
                {"id": number, "fields": {"COMPLETED": "Y"}},
                f"crm.activity.update of activity {number}",
            )
        except TaskNotFound:
            return

    def status(self, task_id: str) -> str:
        number = self.number(task_id, "the activity id")
        try:
            result = self._call("crm.activity.get", {"id": number}, f"crm.activity.get of activity {number}")
        except TaskNotFound:
            return "gone"
        if not isinstance(result, dict):
            raise self.http.fail(
                f"crm.activity.get of activity {number}: the answer is not an activity", transient=False
            )
        return "done" if str(result.get("COMPLETED")).upper() == "Y" else "open"

    def assign_owner(self, lead_id: str, owner: str, kind: str = "deal") -> None:
        method = UPDATE_METHODS[self.record_kind(kind)]
        record = self.number(lead_id, f"the {kind} id")
        user = self.number(owner, "the new owner")
        params = {"id": record, "fields": {"ASSIGNED_BY_ID": user}, "params": {"REGISTER_SONET_EVENT": "Y"}}
        what = f"{method} of {kind} {record} to user {user}"
        if self._call(method, params, what) is not True:
            raise self.http.fail(f"{what}: the portal did not confirm the change", transient=False)

    # --- helpers --------------------------------------------------------------------------

    def _responsible(self, kind: str, owner_id: int) -> int:
        method = READ_METHODS[kind]
        result = self._call(method, {"id": owner_id}, f"{method} of {kind} {owner_id}")
        assigned = result.get("ASSIGNED_BY_ID") if isinstance(result, dict) else None
        if assigned in (None, "", "0", 0):
            raise self.http.fail(f"{method} of {kind} {owner_id}: the record has no responsible user", transient=False)
        return self.number(str(assigned), "ASSIGNED_BY_ID")

    def _call(self, method: str, params: dict[str, Any], what: str) -> Any:
        """POST the method with a JSON body and return ``result``, or raise what the error means."""
        response = self.http.request(
            "POST", f"{self.rest_url}/{method}", what, json=params, headers={"Accept": "application/json"}
        )
        body = json_body(response)
        code = str(body.get("error") or "") if isinstance(body, dict) else ""
        if response.status_code >= 400 or code:
            raise self._error(response, body, what)
        if not isinstance(body, dict) or "result" not in body:
            raise self.http.fail(f"{what}: the answer has no result", transient=False, status=response.status_code)
        return body["result"]

    def _error(self, response: requests.Response, body: Any, what: str) -> TaskError:
        code = str(body.get("error") or "").upper() if isinstance(body, dict) else ""
        description = str(body.get("error_description") or "").strip() if isinstance(body, dict) else ""
        detail = " ".join(part for part in (code, description) if part) or None
        status = response.status_code
        if code in _NOT_FOUND or (
            status in (400, 404) and not code.startswith("ERROR_METHOD") and "not found" in description.lower()
        ):
            return TaskNotFound(CRM, self.http.scrub(f"{what}: not found"), status=status)
        if code in _TRANSIENT:
            limited = code == "QUERY_LIMIT_EXCEEDED"
            wait = _RATE_WAIT_S if limited else None
            error = self.http.error(response, what, detail, retry_after_s=wait)
            if not error.transient or limited:
                message = str(error).removeprefix(f"{CRM}: ") if error.transient else f"{what}: {detail}"
                return self.http.fail(
                    message,
                    transient=True,
                    rate_limited=limited,
                    retry_after_s=error.retry_after_s or wait,
                    status=status,
                )
            return error
        refusal = _refusal(code)
        if refusal is not None:
            return self.http.fail(f"{what}: {refusal}", transient=False, status=status)
        if status < 400:
            return self.http.fail(f"{what}: {detail}", transient=False, status=status)
        if status in (404, 410) and not code:
            return self.http.fail(
                f"{what}: the webhook URL answered HTTP {status}: check {REST_URL}", transient=False, status=status
            )
        return self.http.error(response, what, detail)
