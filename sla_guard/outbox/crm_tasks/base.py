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

Secrets (tokens, webhook keys) never appear in an error message: clients pass them to
:class:`Http`, which blanks them out of every message it builds.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, runtime_checkable

import requests
from redis.exceptions import RedisError

from sla_guard.exceptions import SlaGuardError
from sla_guard.outbox.pacing import Limit, PaceDeferred, Pacer

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 20.0)
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


class TaskError(SlaGuardError):
    """A CRM task call failed.

    ``transient`` says whether trying again later may succeed; ``retry_after_s`` is how long
    the CRM asked to wait (``None`` when it did not say); ``status`` is the HTTP status, if any.
    The message names the CRM and the problem and never holds a secret.
    """

    def __init__(
        self, crm: str, message: str, *, transient: bool, retry_after_s: float | None = None, status: int | None = None
    ):
        self.crm = crm
        self.transient = transient
        self.retry_after_s = retry_after_s
        self.status = status
        super().__init__(f"{crm}: {message}")
        self._message = message

    def __reduce__(self):
        return _rebuild, (type(self), self.crm, self._message, self.transient, self.retry_after_s, self.status)


def _rebuild(
    cls: type[TaskError], crm: str, message: str, transient: bool, retry_after_s: float | None, status: int | None
) -> TaskError:
    """Unpickle a :class:`TaskError` (RQ may carry one between processes)."""
    error = TaskError.__new__(cls)
    TaskError.__init__(error, crm, message, transient=transient, retry_after_s=retry_after_s, status=status)
    return error


class TaskNotFound(TaskError):
    """The task, or the lead it belongs to, does not exist (any more) in the CRM. Permanent."""

    def __init__(self, crm: str, message: str, *, status: int | None = None):
        super().__init__(crm, message, transient=False, status=status)


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


def retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or ``None``."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def json_body(response: requests.Response) -> Any:
    """The decoded JSON body, or ``None`` when it is empty or not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def rate_limited(response: requests.Response) -> bool:
    """Whether an answer says "too many requests" (HTTP 429, the common case)."""
    return response.status_code == 429


@dataclass(frozen=True)
class Pace:
    """How one CRM account's calls are paced (:mod:`sla_guard.outbox.pacing`).

    ``account`` is a digest naming the account; ``limits`` the CRM's documented limits;
    ``pause_s`` how long every worker holds the account's calls after a "too many requests"
    that named no wait; ``blocked_s``, when set, how long a 403 following such an answer holds
    them (amoCRM blocks an account that keeps going past its limit); ``cost`` the weight of a
    call (Pipedrive's token costs); ``limited`` recognises the CRM's "too many requests".
    """

    crm: str
    account: str
    limits: tuple[Limit, ...]
    pause_s: float = 1.0
    blocked_s: float = 0.0
    cost: Callable[[str, str], int] | None = None
    limited: Callable[[requests.Response], bool] = rate_limited


class Http:
    """Sends one CRM's requests, each in its turn (:class:`Pace`), and turns failures into
    :class:`TaskError`."""

    def __init__(
        self,
        crm: str,
        session: requests.Session,
        timeout: float | tuple[float, float],
        secrets: Iterable[str | None],
        credentials: str,
        *,
        pacer: Pacer | None = None,
        pace: Pace | None = None,
    ):
        self.crm = crm
        self.session = session
        self.timeout = timeout
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.credentials = credentials
        """The setting(s) to check when the CRM refuses the credentials (a name, never a value)."""
        self.pacer = pacer if pace is not None else None
        self.pace = pace

    def send(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """Perform the request in the account's turn; network failures, and a turn too far
        away, become transient errors."""
        if self.pacer is None or self.pace is None:
            return self._request(method, url, what, **kwargs)
        pace = self.pace
        cost = pace.cost(method, url) if pace.cost else 1
        try:
            with self.pacer.turn(pace.crm, pace.account, pace.limits, cost):
                response = self._request(method, url, what, **kwargs)
            if pace.limited(response):
                self.pacer.limited(pace.crm, pace.account, retry_after(response) or pace.pause_s)
            elif response.status_code == 403 and pace.blocked_s and self.pacer.recently_limited(pace.crm, pace.account):
                self.pacer.pause(pace.crm, pace.account, pace.blocked_s)
                raise self.fail(
                    f"{what}: the CRM refused the account (HTTP 403) right after too many requests; "
                    f"every call of the account waits {pace.blocked_s:.0f} s",
                    transient=True,
                    retry_after_s=pace.blocked_s,
                    status=403,
                )
        except PaceDeferred as exc:
            raise self.fail(f"{what}: not sent, {exc}", transient=True, retry_after_s=exc.wait_s) from None
        except RedisError as exc:
            raise self.fail(
                f"{what}: not sent, the pace of CRM calls cannot be checked ({type(exc).__name__})", transient=True
            ) from None
        return response

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.Timeout:
            raise self.fail(f"{what}: no answer in time", transient=True) from None
        except requests.ConnectionError as exc:
            raise self.fail(f"{what}: cannot connect ({type(exc).__name__})", transient=True) from None
        except requests.RequestException as exc:
            raise self.fail(f"{what}: the request failed ({type(exc).__name__})", transient=False) from None

    def fail(
        self, message: str, *, transient: bool, retry_after_s: float | None = None, status: int | None = None
    ) -> TaskError:
        """A :class:`TaskError` with every secret blanked out of ``message``."""
        return TaskError(self.crm, self.scrub(message), transient=transient, retry_after_s=retry_after_s, status=status)

    def error(
        self, response: requests.Response, what: str, detail: str | None = None, *, retry_after_s: float | None = None
    ) -> TaskError:
        """The error an unsuccessful answer means, by its HTTP status.

        429, 408, 425 and 5xx are transient (``Retry-After`` is honoured, else
        ``retry_after_s``); 401/403 name the credentials to check; 404 and 410 are
        :class:`TaskNotFound`; any other 4xx (validation) is permanent.
        """
        status = response.status_code
        wait = retry_after(response)
        wait = retry_after_s if wait is None else wait
        suffix = f": {self.scrub(detail)[:300]}" if detail else ""
        if status == 429:
            return self.fail(
                f"{what}: rate limit reached (HTTP 429){suffix}", transient=True, retry_after_s=wait, status=status
            )
        if status in (408, 425) or status >= 500:
            return self.fail(
                f"{what}: the CRM failed (HTTP {status}){suffix}", transient=True, retry_after_s=wait, status=status
            )
        if status in (404, 410):
            return TaskNotFound(self.crm, self.scrub(f"{what}: not found (HTTP {status}){suffix}"), status=status)
        if status == 401:
            reason = f"the credentials were refused (HTTP 401): check {self.credentials}"
        elif status == 403:
            reason = "access denied (HTTP 403): the integration's user lacks the rights or scope"
        elif status == 402:
            reason = "payment required (HTTP 402): the CRM account's plan or subscription does not allow this"
        elif status in (400, 422):
            reason = f"the request was refused as invalid (HTTP {status})"
        else:
            reason = f"unexpected answer (HTTP {status})"
        return self.fail(f"{what}: {reason}{suffix}", transient=False, status=status)

    def scrub(self, message: str) -> str:
        for secret in self.secrets:
            message = message.replace(secret, "***")
        return message
