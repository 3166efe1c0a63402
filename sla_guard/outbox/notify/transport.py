"""HTTP plumbing shared by the chat channels: one POST, failures sorted into retry or give up.

Every error message built here names the status and the service's own short reason, never the
URL: webhook URLs and bot tokens are secrets, and requests' exceptions quote the URL.
"""

from __future__ import annotations

from collections.abc import Iterable

import requests

from sla_guard.outbox.notify.channels import DeliveryError

RETRY_AFTER_CAP_S = 3600.0
"""A ``Retry-After`` longer than this is read as this: a channel is never parked for days."""

TRANSIENT_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "never"; every 5xx is transient too."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret (and its path part, for tokens inside URLs) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s and len(str(s)) >= 4), key=lambda s: -len(str(s))):
        text = text.replace(str(secret), "***")
    return text


def retry_after_s(response: requests.Response, body: dict | None = None) -> float | None:
    """Seconds the service asks us to wait: Telegram's ``parameters.retry_after``, else ``Retry-After``."""
    candidates = []
    if isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        candidates.append(body["parameters"].get("retry_after"))
    candidates.append(response.headers.get("Retry-After"))
    for value in candidates:
        try:
            if value is not None:
                return min(RETRY_AFTER_CAP_S, max(0.0, float(value)))
        except (TypeError, ValueError):
            continue
    return None


def is_transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES or status >= 500


def post(http: requests.Session, url: str, *, timeout_s: float, what: str, **kwargs) -> requests.Response:
    """POST without following redirects; timeouts and connection failures become transient errors."""
    try:
        return http.post(url, timeout=timeout_s, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise DeliveryError(f"{what}: timed out", transient=True) from None
    except requests.ConnectionError as exc:
        raise DeliveryError(f"{what}: cannot connect ({type(exc).__name__})", transient=True) from None
    except requests.RequestException as exc:
        raise DeliveryError(f"{what}: request failed ({type(exc).__name__})", transient=False) from None


def json_body(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def short(text: str | None, limit: int = 200) -> str:
    """A service's reason, on one line and bounded."""
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
