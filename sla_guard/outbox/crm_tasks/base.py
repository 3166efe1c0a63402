"""Shared types and HTTP plumbing of the CRM task clients.

A follow-up step becomes a real task in the CRM, assigned to the lead's owner; a lead sla-guard
reassigns gets its new owner in the CRM too (``assign_owner``). Every client
(:mod:`.amocrm`, :mod:`.bitrix24`, :mod:`.hubspot`, :mod:`.pipedrive`) implements
:class:`TaskClient` over the CRM's REST API with ``requests`` and raises :class:`TaskError`
whose ``transient`` flag tells the caller whether to retry (and ``retry_after_s`` when the
CRM said how long to wait).

Idempotency. No CRM here deduplicates task creation by a client key, so the step's
``idempotency_key`` is written into the task's text as a marker line (``[sla-guard-fu-42-1]``).
After a crash between ``create`` and the caller's commit, ``find`` lists the lead's tasks and
returns the one carrying the marker, so the step is not created twice.

Every call goes through the one HTTP layer (:mod:`sla_guard.outbox.http`, built here by
:func:`crm_http`): it sorts failures into retryable, rate-limited and permanent
:class:`~sla_guard.exceptions.TaskError`, blanks secrets (tokens, webhook keys) out of every
message, and paces the calls of each CRM account.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import requests

from sla_guard.exceptions import TaskError, TaskNotFound
from sla_guard.outbox.http import Http, json_body
from sla_guard.outbox.pacing import account_key

Timeout = float | tuple[float, float]
"""Seconds a CRM call may take: one figure, or (connect, read)."""

DEFAULT_TIMEOUT: Timeout = (5.0, 20.0)
"""(connect, read) seconds for every CRM call; well under the 60 s job timeout."""

KINDS = ("lead", "deal", "contact")
STATUSES = ("open", "done", "gone")
CLOSE_NOTE = "Closed by sla-guard: the follow-up cadence ended."
"""The result text written on a task sla-guard closes, where the CRM keeps one."""


@dataclass(frozen=True)
class TaskRequest:
    """One follow-up step to be created as a CRM task."""

    lead_id: str
    """The CRM's lead/deal id as sla-guard knows it."""
    owner: str | None
    """The CRM user id of the assignee; ``None`` means the lead's responsible user."""
    text: str
    due_at: datetime
    """Aware; normalised to UTC."""
    idempotency_key: str
    """Stable per follow-up step, e.g. ``sla-guard-fu-42-1``."""
    kind: str = "deal"
    """The CRM's kind of record: ``"lead"``, ``"deal"`` or ``"contact"`` (HubSpot); the lead id
    (:mod:`sla_guard.core.record_ids`) says which."""

    def __post_init__(self) -> None:
        if self.due_at.tzinfo is None or self.due_at.utcoffset() is None:
            raise ValueError("TaskRequest.due_at must be timezone-aware")
        object.__setattr__(self, "due_at", self.due_at.astimezone(UTC))
        if self.kind not in KINDS:
            raise ValueError(f"TaskRequest.kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not str(self.lead_id).strip() or not str(self.idempotency_key).strip():
            raise ValueError("TaskRequest.lead_id and idempotency_key must not be empty")
        if any(char in self.idempotency_key for char in "[]\n"):
            raise ValueError("TaskRequest.idempotency_key may not contain brackets or line breaks")


@runtime_checkable
class TaskClient(Protocol):
    """Creates, finds, closes and reads follow-up tasks in one CRM, and reassigns its leads."""

    def create(self, task: TaskRequest) -> str:
        """Create the task; return the CRM's task id."""
        ...

    def find(self, task: TaskRequest) -> str | None:
        """The id of an existing task carrying this step's idempotency key, or ``None``."""
        ...

    def close(self, task_id: str) -> None:
        """Complete a task sla-guard created; a task already gone is no error."""
        ...

    def status(self, task_id: str) -> str:
        """``"open"``, ``"done"`` or ``"gone"``."""
        ...

    def assign_owner(self, lead_id: str, owner: str, kind: str = "deal") -> None:
        """Make ``owner`` (a CRM user id) the responsible user of the lead or deal.

        Setting the owner it already has is harmless, so a retry needs no look-up first.
        """
        ...


# --- task text ----------------------------------------------------------------------------


def marker(key: str) -> str:
    """The line that carries the idempotency key inside a task's text."""
    return f"[{key}]"


def with_marker(text: str, key: str) -> str:
    """The task text followed by its marker line."""
    return f"{text.rstrip()}\n\n{marker(key)}"


def html_with_marker(text: str, key: str) -> str:
    """:func:`with_marker` for CRMs whose notes are HTML (text escaped, lines kept)."""
    return f"{html.escape(text.rstrip())}<br><br>{marker(key)}".replace("\n", "<br>")


def has_marker(text: Any, key: str) -> bool:
    """Whether a task text (as the CRM returns it) carries the marker of ``key``."""
    return isinstance(text, str) and marker(key) in text


def marked_task(
    items: Any,
    key: str,
    text: Callable[[dict], Any],
    *,
    id_field: str = "id",
    also: Callable[[dict], bool] | None = None,
) -> str | None:
    """The id of the first task in ``items`` (the CRM's list of task objects) whose ``text``
    carries the marker of ``key`` (and that meets ``also``, when given); ``None`` when none does."""
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get(id_field) is None or (also is not None and not also(item)):
            continue
        if has_marker(text(item), key):
            return str(item[id_field])
    return None


def subject(text: str, limit: int = 200) -> str:
    """A one-line title: the first non-empty line of the text, shortened to ``limit`` characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "Follow-up")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def numeric_id(value: str, crm: str, what: str) -> int:
    """A CRM id that must be a whole number; a permanent :class:`TaskError` otherwise."""
    text = str(value).strip()
    if not text.isdigit():
        raise TaskError(crm, f"{what} must be a numeric id, got {text[:40]!r}", transient=False)
    return int(text)


def record_kind(kind: str, crm: str) -> str:
    """``kind`` when it is ``"lead"`` or ``"deal"``; a permanent :class:`TaskError` otherwise."""
    if kind not in KINDS:
        raise TaskError(
            crm, f"the record kind must be one of {', '.join(KINDS)}, not {str(kind)[:40]!r}", transient=False
        )
    return kind


def setting(settings: Mapping[str, Any], key: str) -> str | None:
    """A setting as stripped text; ``None`` when absent or empty."""
    value = settings.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# --- HTTP ---------------------------------------------------------------------------------


class CrmTasks:
    """What every task client shares: the CRM's name in its errors, the checks of the ids it is
    given, and its connection through the one HTTP layer."""

    crm: ClassVar[str]
    """The CRM's name as people read it (``"amoCRM"``), at the head of every error."""
    http: Http

    def number(self, value: str, what: str) -> int:
        """:func:`numeric_id` of this CRM."""
        return numeric_id(value, self.crm, what)

    def record_kind(self, kind: str) -> str:
        """:func:`record_kind` of this CRM."""
        return record_kind(kind, self.crm)

    def connect(
        self,
        session: requests.Session,
        timeout: Timeout,
        secrets: Iterable[str | None],
        credentials: str,
        account: str,
        **pacing: Any,
    ) -> Http:
        """:func:`crm_http` of this CRM."""
        return crm_http(self.crm, session, timeout, secrets, credentials, account, **pacing)


class RestTasks(CrmTasks):
    """What the REST task clients share: one API address and token, sending a call, completing a
    task and reading one. Each client reads its CRM's error bodies (``_error``)."""

    api_url: str
    headers: dict[str, str]

    def _open(
        self,
        session: requests.Session,
        timeout: Timeout,
        api_url: str,
        token: str,
        token_setting: str,
        *,
        account: str,
        auth: Mapping[str, str],
        **pacing: Any,
    ) -> None:
        """Set the client up: its API's address, its HTTP layer (``token`` blanked out of every
        error, calls paced per ``account``) and the headers that carry the token (``auth``)."""
        self.api_url = api_url.rstrip("/")
        self.http = self.connect(session, timeout, [token], token_setting, account, **pacing)
        self.headers = {**auth, "Accept": "application/json"}

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.api_url}{path}", what, headers=self.headers, **kwargs)

    def _error(self, response: requests.Response, what: str) -> TaskError:
        raise NotImplementedError

    def _complete(self, method: str, path: str, what: str, *, done: tuple[int, ...], **kwargs: Any) -> None:
        """Complete a task: ``done`` statuses are success, and so is a task already gone."""
        response = self._send(method, path, what, **kwargs)
        if response.status_code in done:
            return
        error = self._error(response, what)
        if not isinstance(error, TaskNotFound):
            raise error

    def _read(
        self,
        path: str,
        what: str,
        *,
        gone: tuple[int, ...],
        thing: str,
        unwrap: Callable[[Any], Any] = lambda body: body,
        **kwargs: Any,
    ) -> dict | None:
        """A task as the CRM answers it (``unwrap`` takes it out of an envelope), ``None`` when gone."""
        response = self._send("GET", path, what, **kwargs)
        if response.status_code in gone:
            return None
        if response.status_code != 200:
            raise self._error(response, what)
        body = unwrap(json_body(response))
        if not isinstance(body, dict):
            raise self.http.fail(f"{what}: the answer is not {thing}", transient=False, status=200)
        return body


class TokenTasks(RestTasks):
    """What the clients of an account known by its API token alone share (HubSpot, Pipedrive):
    the settings that name the token and the API's address, and how a token becomes a client
    whose calls are paced per token. Each client says how the token is sent (:meth:`auth`)."""

    token_setting: ClassVar[str]
    """The setting that holds the API token (``SLA_GUARD_HUBSPOT_ACCESS_TOKEN``)."""
    api_url_setting: ClassVar[str]
    """The setting that names another API address than :attr:`default_api_url`."""
    default_api_url: ClassVar[str]

    def __init__(
        self, token: str, session: requests.Session, *, api_url: str | None = None, timeout: Timeout = DEFAULT_TIMEOUT
    ):
        api_base = self.api_base(api_url or self.default_api_url)
        account = account_key(token)
        self._open(
            session,
            timeout,
            api_base,
            token,
            self.token_setting,
            account=account,
            auth=self.auth(token),
            **self.pacing(),
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], session: requests.Session) -> Self | None:
        """The client, or ``None`` unless the :attr:`token_setting` is set."""
        token = setting(settings, cls.token_setting)
        if not token:
            return None
        return cls(token, session, api_url=setting(settings, cls.api_url_setting), **cls.options(settings))

    @classmethod
    def options(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The client's own settings, as keyword arguments of its constructor."""
        return {}

    def api_base(self, api_url: str) -> str:
        """The address the API's paths follow."""
        return api_url

    def auth(self, token: str) -> dict[str, str]:
        """The headers that carry the token."""
        raise NotImplementedError

    def pacing(self) -> dict[str, Any]:
        """How :func:`crm_http` paces this CRM's calls (``limited``, ``cost``), beyond the default."""
        return {}


def crm_http(
    crm: str,
    session: requests.Session,
    timeout: Timeout,
    secrets: Iterable[str | None],
    credentials: str,
    account: str,
    *,
    limited: Callable[[requests.Response], bool] | None = None,
    cost: Callable[[str, str], int] | None = None,
) -> Http:
    """The :class:`~sla_guard.outbox.http.Http` of one CRM account: :class:`TaskError` on
    failure, :class:`TaskNotFound` for 404/410, paced per ``account`` (``limited`` and ``cost``
    as :class:`~sla_guard.outbox.http.Http` takes them)."""
    return Http(
        crm,
        session,
        timeout,
        secrets,
        credentials,
        account=account,
        error=TaskError,
        not_found=TaskNotFound,
        limited=limited,
        cost=cost,
    )
