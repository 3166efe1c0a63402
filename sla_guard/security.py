"""Authenticity of generic webhooks and of API callers. Pure: the clock is passed in."""

from __future__ import annotations

import hashlib
import hmac

from sla_guard.exceptions import Unauthorized

SIGNATURE_HEADER = "X-SLA-Guard-Signature"
"""Header carrying ``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts on ``body`` at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(header: str | None, body: bytes, secret: str, now: float, max_age_s: int) -> None:
    """Raise :class:`Unauthorized` unless ``header`` signs ``body`` with ``secret`` recently enough.

    Several ``v1=`` values may be given (a sender rotating its secret); one must match.
    Timestamps more than ``max_age_s`` away from ``now``, in either direction, are refused.
    """
    if not header:
        raise Unauthorized(f"missing {SIGNATURE_HEADER} header")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12 or not signatures:
        raise Unauthorized(f"malformed {SIGNATURE_HEADER} header: expected t=<unix seconds>,v1=<hex>")
    if abs(now - int(timestamp)) > max_age_s:
        raise Unauthorized("signature timestamp is too old or in the future")
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")) for given in signatures):
        raise Unauthorized("signature does not match")


def verify_bearer(header: str | None, token: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``header`` is ``Bearer <token>``."""
    if not token:
        raise Unauthorized("the API is disabled: set SLA_GUARD_API_TOKEN")
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("missing or wrong bearer token")


SLACK_MAX_AGE_S = 300
"""Slack interactivity requests older (or newer) than this are refused, as Slack advises."""


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=<hex HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>")>``, Slack's request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise :class:`Unauthorized` unless Slack signed ``body`` with ``secret`` within five minutes of ``now``."""
    if not timestamp or not signature:
        raise Unauthorized("missing X-Slack-Request-Timestamp or X-Slack-Signature header")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Unauthorized("malformed X-Slack-Request-Timestamp header")
    if abs(now - int(timestamp)) > SLACK_MAX_AGE_S:
        raise Unauthorized("request timestamp is too old or in the future")
    if not hmac.compare_digest(slack_signature(secret, timestamp, body).encode(), signature.encode()):
        raise Unauthorized("signature does not match")


def verify_telegram(secret: str, header: str | None) -> None:
    """Raise :class:`Unauthorized` unless ``header`` is the webhook's secret token (``X-Telegram-Bot-Api-Secret-Token``)."""
    if not header or not hmac.compare_digest(header.encode(), secret.encode()):
        raise Unauthorized("missing or wrong X-Telegram-Bot-Api-Secret-Token header")
