"""The one HTTP layer under every channel and CRM client.

:class:`Http` sends a request for one outside service and turns every failure into a
:class:`~sla_guard.exceptions.DeliveryError` of one of three kinds:

- ``retryable``: timeouts, dropped connections, 408, 425 and every 5xx;
- ``rate_limited``: 429 (and the services' own "too fast" answers), with the wait the service
  named (``Retry-After`` in seconds or as an HTTP date, Telegram's ``parameters.retry_after``,
  or the caller's reading of a CRM's own headers), capped at :data:`RETRY_AFTER_CAP_S`;
- ``permanent``: every other answer (refused credentials, a removed chat, invalid data).

Secrets never leave it: the values of the credentials it is given, the values of the
authorisation headers it sends and token-shaped parts of URLs are blanked out of every error
message it builds (:meth:`Http.scrub`), and requests' own exceptions, which quote the URL, are
reduced to their type.

Pacing. Every request of a client that names its ``account`` (the CRM clients do) is made
inside the installed :class:`Pacer`'s turn for that account (:func:`install_pacer`; none by
default), and the pacer hears of every rate-limited answer (a 429, or what the client's
``limited`` recognises, such as Bitrix24's ``QUERY_LIMIT_EXCEEDED`` as HTTP 503). A 403 the
pacer reads as the service blocking the account after such answers (amoCRM does) is
rate-limited too, with the pacer's wait. A turn too far away, or a pace that cannot be read,
sends nothing and is a rate-limited or retryable error. This is the single place where the
limiter shared by all workers of one CRM account (:mod:`sla_guard.outbox.pacing`) plugs in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
from redis.exceptions import RedisError

from sla_guard.exceptions import ServiceError
from sla_guard.outbox.pacing import PaceDeferred

RETRY_AFTER_CAP_S = 3600.0
"""A wait longer than this is read as this: an item is never parked for days by one answer."""

RETRYABLE_STATUSES = frozenset({408, 425})
"""4xx answers that mean "not now" rather than "never"; every 5xx is retryable too."""

RATE_LIMITED_STATUS = 429

SECRET_HEADERS = ("authorization", "x-api-token", "x-api-key", "api-key", "x-auth-token")
"""Request headers whose values are credentials."""

_SECRET_PATTERNS = (
    re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+"),  # a Telegram bot token inside a URL
    re.compile(r"(?i)(bearer )[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)([?&](?:api_token|access_token|token|key|auth)=)[^&\s#]+"),
)
"""Token-shaped text blanked out even when nobody named it as a secret."""


# --- classifying answers -------------------------------------------------------------------


def status_kind(status: int) -> str:
    """``"rate_limited"``, ``"retryable"`` or ``"permanent"``: what an HTTP status means for a retry."""
    if status == RATE_LIMITED_STATUS:
        return ServiceError.RATE_LIMITED
    if status in RETRYABLE_STATUSES or status >= 500:
        return ServiceError.RETRYABLE
    return ServiceError.PERMANENT


def is_transient_status(status: int) -> bool:
    return status_kind(status) != ServiceError.PERMANENT


def _seconds(value: Any) -> float | None:
    """A wait in seconds from a number or an HTTP date; ``None`` when neither."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def retry_after(response: requests.Response, body: Any = None) -> float | None:
    """Seconds the service asks us to wait: Telegram's ``parameters.retry_after``, else
    ``Retry-After`` (seconds or an HTTP date); ``None`` when it named none."""
    candidates = []
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        candidates.append(body["parameters"].get("retry_after"))
    candidates.append(response.headers.get("Retry-After"))
    for value in candidates:
        wait = _seconds(value)
        if wait is not None:
            return min(RETRY_AFTER_CAP_S, wait)
    return None


def json_body(response: requests.Response) -> Any:
    """The decoded JSON body, or ``None`` when it is empty or not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def json_object(response: requests.Response) -> dict | None:
    """The JSON body when it is an object, else ``None``."""
    body = json_body(response)
    return body if isinstance(body, dict) else None


def bitrix24_query_limit_exceeded(response: requests.Response) -> bool:
    """Bitrix24 says "too many requests" as HTTP 503 with ``QUERY_LIMIT_EXCEEDED`` (or a 429)."""
    if response.status_code == 429:
        return True
    body = json_object(response) if response.status_code == 503 else None
    return body is not None and str(body.get("error") or "").upper() == "QUERY_LIMIT_EXCEEDED"


def short(text: Any, limit: int = 200) -> str:
    """A service's reason, on one line and bounded."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (of four characters or more), and every token-shaped part of a
    URL or header, replaced by ``***``."""
    for secret in sorted({str(s) for s in secrets if s and len(str(s)) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


# --- pacing --------------------------------------------------------------------------------


class Pacer(Protocol):
    """Keeps the requests of one account of a service under its rate limit, across processes
    (:mod:`sla_guard.outbox.pacing` keeps the pace in Redis)."""

    def turn(self, service: str, account: str, cost: int = 1) -> AbstractContextManager[Any]:
        """Held for the whole request: entered when one more request to ``account`` may go out
        (it may wait, or raise :class:`~sla_guard.outbox.pacing.PaceDeferred` to retry later),
        left when the answer came. ``cost`` is the request's weight (Pipedrive's tokens)."""
        ...

    def rate_limited(self, service: str, account: str, wait_s: float | None) -> None:
        """The service answered "too fast" anyway; ``wait_s`` is the wait it named, if any."""
        ...

    def refused(self, service: str, account: str) -> float | None:
        """The service answered 403: the seconds every call of the account now waits when that
        means the account was blocked for going too fast, else ``None`` (a plain refusal)."""
        ...


_pacer: Pacer | None = None


def install_pacer(pacer: Pacer | None) -> Pacer | None:
    """Make ``pacer`` pace every request of clients that name an account; return the previous one."""
    global _pacer
    previous, _pacer = _pacer, pacer
    return previous


# --- the client ----------------------------------------------------------------------------


class Http:
    """Sends the requests of one service and builds its errors.

    ``service`` names it in every message (``"telegram"``, ``"amoCRM"``); ``secrets`` are
    values never to show; ``credentials`` names the setting(s) to check when the service
    refuses them (a name, never a value); ``account`` (a CRM's base URL or portal) turns on
    pacing; ``error`` is the :class:`~sla_guard.exceptions.ServiceError` class raised.
    """

    def __init__(
        self,
        service: str,
        session: requests.Session,
        timeout: float | tuple[float, float],
        secrets: Iterable[str | None] = (),
        credentials: str = "the credentials",
        *,
        account: str | None = None,
        error: type[ServiceError] = ServiceError,
        not_found: type[ServiceError] | None = None,
        limited: Callable[[requests.Response], bool] | None = None,
        cost: Callable[[str, str], int] | None = None,
    ):
        self.service = service
        self.session = session
        self.timeout = timeout
        self.secrets = {str(s) for s in secrets if s and len(str(s)) >= 4}
        self.credentials = credentials
        self.account = account
        self.error_class = error
        self.not_found_class = not_found
        self.limited = limited
        """Recognises the service's own "too fast" answers besides 429."""
        self.cost = cost
        """The weight of a request (method, URL) in the account's budget; 1 when not given."""

    # --- sending ---------------------------------------------------------------------------

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """Perform the request without following redirects; network failures become retryable
        errors. The secrets in its headers join :attr:`secrets`."""
        for name, value in (kwargs.get("headers") or {}).items():
            if name.lower() in SECRET_HEADERS and value:
                self.secrets.add(str(value))
                self.secrets.add(str(value).partition(" ")[2] or str(value))
        lead = f"{what}: " if what else ""
        pacer = _pacer if self.account is not None else None
        cost = self.cost(method, url) if self.cost is not None else 1
        try:
            with pacer.turn(self.service, self.account, cost) if pacer is not None else nullcontext():
                response = self.session.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except PaceDeferred as exc:
            raise self.fail(
                f"{lead}not sent: {exc}", transient=True, rate_limited=True, retry_after_s=exc.wait_s
            ) from None
        except RedisError as exc:
            raise self.fail(
                f"{lead}not sent: the pace of calls is unknown ({type(exc).__name__})", transient=True
            ) from None
        except requests.Timeout:
            raise self.fail(f"{lead}timed out (no answer in time)", transient=True) from None
        except requests.ConnectionError as exc:
            raise self.fail(f"{lead}cannot connect ({type(exc).__name__})", transient=True) from None
        except requests.RequestException as exc:
            raise self.fail(f"{lead}the request failed ({type(exc).__name__})", transient=False) from None
        if pacer is not None:
            self._tell_pacer(pacer, response, lead)
        return response

    def _tell_pacer(self, pacer: Pacer, response: requests.Response, lead: str) -> None:
        limited = self.limited(response) if self.limited is not None else False
        try:
            if response.status_code == RATE_LIMITED_STATUS or limited:
                pacer.rate_limited(self.service, self.account, retry_after(response))
                return
            blocked_s = pacer.refused(self.service, self.account) if response.status_code == 403 else None
        except RedisError:
            return  # the answer stands; the pace is told next time
        if blocked_s:
            raise self.fail(
                f"{lead}refused (HTTP 403) right after too many requests: the account is blocked for now; "
                f"every call of it waits {blocked_s:.0f} s",
                transient=True,
                rate_limited=True,
                retry_after_s=blocked_s,
                status=403,
            )

    def post(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, what, **kwargs)

    # --- errors ----------------------------------------------------------------------------

    def fail(self, message: str, **fields: Any) -> ServiceError:
        """The service's error with every secret blanked out of ``message``; ``fields`` are the
        error's ``transient``, ``rate_limited``, ``retry_after_s`` and ``status``."""
        return self.error_class(self.service, self.scrub(message), **fields)

    def by_status(
        self,
        response: requests.Response,
        message: str,
        *,
        body: Any = None,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> ServiceError:
        """``message`` as the error its answer's status (or ``status``, a code the service put in
        its body) means (see :func:`status_kind`); the wait is the service's own, else ``retry_after_s``."""
        status = response.status_code if status is None else status
        kind = status_kind(status)
        wait = retry_after(response, body)
        return self.fail(
            message,
            transient=kind != ServiceError.PERMANENT,
            rate_limited=kind == ServiceError.RATE_LIMITED,
            retry_after_s=(retry_after_s if wait is None else wait) if kind != ServiceError.PERMANENT else None,
            status=status,
        )

    def error(
        self, response: requests.Response, what: str, detail: str | None = None, *, retry_after_s: float | None = None
    ) -> ServiceError:
        """The error an unsuccessful answer of a REST API means, with a reason a person can act on.

        429 is rate-limited, 408, 425 and 5xx are retryable (``Retry-After`` is honoured, else
        ``retry_after_s``); 401/403 name the credentials to check; 404 and 410 are the
        ``not_found`` class when one is given; any other 4xx (validation) is permanent.
        """
        status = response.status_code
        suffix = f": {self.scrub(detail)[:300]}" if detail else ""
        kind = status_kind(status)
        if kind == ServiceError.RATE_LIMITED:
            reason = f"rate limit reached (HTTP {status})"
        elif kind == ServiceError.RETRYABLE:
            reason = f"the service failed (HTTP {status})"
        elif status in (404, 410) and self.not_found_class is not None:
            return self.not_found_class(
                self.service, self.scrub(f"{what}: not found (HTTP {status}){suffix}"), status=status
            )
        elif status == 401:
            reason = f"the credentials were refused (HTTP 401): check {self.credentials}"
        elif status == 403:
            reason = "access denied (HTTP 403): the integration's user lacks the rights or scope"
        elif status == 402:
            reason = "payment required (HTTP 402): the account's plan or subscription does not allow this"
        elif status in (400, 422):
            reason = f"the request was refused as invalid (HTTP {status})"
        else:
            reason = f"unexpected answer (HTTP {status})"
        return self.by_status(response, f"{what}: {reason}{suffix}", retry_after_s=retry_after_s)

    def scrub(self, message: str) -> str:
        return redact(message, self.secrets)
