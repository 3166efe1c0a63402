"""Acknowledge links: a signed, expiring token per (escalation, recipient), and what a click does.

A token is ``<escalation id>.<expiry epoch>.<recipient, base64url>.<signature>``; the signature
is HMAC-SHA256 under ``SLA_GUARD_ACK_SECRET``, cut to 128 bits. Signing and checking are pure
(the clock is passed in); :func:`acknowledge` records a click through the store. An acknowledged escalation stops its clock's ladder: no further level fires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from sla_guard.config import Settings
from sla_guard.store.outbox import acknowledge_escalation

SIGNATURE_BYTES = 16
"""Bytes of the HMAC kept in a token (128 bits)."""


class BadToken(Exception):
    """The token is malformed or its signature does not match."""


class ExpiredToken(Exception):
    """The token was genuine but its time is over."""


@dataclass(frozen=True)
class AckClaim:
    escalation_id: int
    recipient: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), b"sla-guard.ack." + body.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES])


def sign_token(secret: str, escalation_id: int, recipient: str, expires_at: datetime) -> str:
    """The token for ``recipient`` to acknowledge ``escalation_id`` until ``expires_at``."""
    body = f"{int(escalation_id)}.{int(expires_at.timestamp())}.{_b64(recipient.encode())}"
    return f"{body}.{_signature(secret, body)}"


def verify_token(secret: str, token: str, now: datetime) -> AckClaim:
    """The claim a token makes; raises :class:`BadToken` or :class:`ExpiredToken`."""
    parts = token.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        raise BadToken("malformed token")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(_signature(secret, body).encode(), parts[3].encode()):
        raise BadToken("signature does not match")
    try:
        recipient = _unb64(parts[2]).decode()
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed recipient") from None
    claim = AckClaim(int(parts[0]), recipient, datetime.fromtimestamp(int(parts[1]), UTC))
    if now >= claim.expires_at:
        raise ExpiredToken("the link has expired")
    return claim


def ack_url(settings: Settings, escalation_id: int, recipient: str | None, now: datetime) -> str | None:
    """The acknowledge link for an alert, or None when ``SLA_GUARD_ACK_SECRET`` or ``SLA_GUARD_PUBLIC_URL`` is unset."""
    if not settings.ack_secret or not settings.public_url:
        return None
    expires_at = now + timedelta(seconds=settings.ack_ttl_s)
    token = sign_token(settings.ack_secret, escalation_id, recipient or "", expires_at)
    return f"{settings.public_url.rstrip('/')}/ack/{token}"


PRESS_VERSION = "p1"
"""First part of a chat button's signed value: ``p1.<alert id>.<expiry epoch>.<signature>``."""


def _press_signature(secret: str, body: str) -> str:
    return _b64(
        hmac.new(secret.encode(), b"sla-guard.press." + body.encode(), hashlib.sha256).digest()[:SIGNATURE_BYTES]
    )


def sign_press(secret: str, alert_id: int, expires_at: datetime) -> str:
    """The value of an alert's "Take it" button (at most 64 bytes, as Telegram's callback data must be)."""
    body = f"{PRESS_VERSION}.{int(alert_id)}.{int(expires_at.timestamp())}"
    return f"{body}.{_press_signature(secret, body)}"


def verify_press(secret: str, value: str, now: datetime) -> tuple[int, datetime]:
    """``(alert id, expiry)`` of a genuine, unexpired press; raises :class:`BadToken` or :class:`ExpiredToken`."""
    parts = str(value).split(".")
    if len(parts) != 4 or parts[0] != PRESS_VERSION or not parts[1].isdigit() or not parts[2].isdigit():
        raise BadToken("malformed press")
    if len(parts[1]) > 18 or len(parts[2]) > 12:
        raise BadToken("malformed press")
    if not hmac.compare_digest(_press_signature(secret, ".".join(parts[:3])).encode(), parts[3].encode()):
        raise BadToken("signature does not match")
    expires_at = datetime.fromtimestamp(int(parts[2]), UTC)
    if now >= expires_at:
        raise ExpiredToken("the button has expired")
    return int(parts[1]), expires_at


def press_value(settings: Settings, alert_id: int, now: datetime) -> str | None:
    """The signed "Take it" value for an alert, or None when ``SLA_GUARD_ACK_SECRET`` is unset."""
    if not settings.ack_secret:
        return None
    return sign_press(settings.ack_secret, alert_id, now + timedelta(seconds=settings.ack_ttl_s))


@dataclass(frozen=True)
class AckOutcome:
    """What a click did: ``acknowledged`` now, ``already`` (by someone, earlier), or ``unknown`` escalation."""

    status: str
    lead_id: str | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


def acknowledge(session: Session, claim: AckClaim, now: datetime) -> AckOutcome:
    """Mark the escalation acknowledged by the claim's recipient, once; later clicks change nothing."""
    changed, row = acknowledge_escalation(session, claim.escalation_id, claim.recipient or None, now)
    if row is None:
        return AckOutcome("unknown")
    return AckOutcome("acknowledged" if changed else "already", row.lead_id, row.acknowledged_by, row.acknowledged_at)
