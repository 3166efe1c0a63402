"""Channel clients: send one alert payload, or raise a delivery error saying whether to retry."""

from __future__ import annotations

import json
import logging

import requests

from ..rules.schema import LOG_CHANNEL, Channel

log = logging.getLogger("sla_guard.alerts")


class DeliveryError(Exception):
    """A delivery failed. ``transient`` says whether trying again later may succeed."""

    def __init__(self, message: str, transient: bool, retry_after_s: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def send_webhook(channel: Channel, payload: dict, http: requests.Session) -> None:
    """POST the alert JSON. 2xx is delivered; 408, 429 and 5xx are retried; other 4xx are final."""
    try:
        response = http.post(
            channel.url,
            data=json.dumps(payload, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "sla-guard",
                     "X-SLA-Guard-Alert-Id": str(payload.get("alert_id"))},
            timeout=channel.timeout_s,
            allow_redirects=False,
        )
    except requests.Timeout:
        raise DeliveryError("timed out", transient=True) from None
    except requests.ConnectionError as exc:
        raise DeliveryError(f"cannot connect: {type(exc).__name__}", transient=True) from None
    if 200 <= response.status_code < 300:
        return
    transient = response.status_code in (408, 425, 429) or response.status_code >= 500
    raise DeliveryError(f"HTTP {response.status_code}", transient=transient, retry_after_s=_retry_after(response))


def send_log(payload: dict) -> None:
    log.warning(payload["text"], extra={"alert": payload, "lead_id": payload["lead_id"]})


def send(channel_name: str, channel: Channel | None, payload: dict, http: requests.Session) -> None:
    """Deliver ``payload`` through the named channel."""
    if channel_name == LOG_CHANNEL and channel is None:
        send_log(payload)
        return
    if channel is None:
        raise DeliveryError(f"channel {channel_name!r} is not in the rules file", transient=False)
    if channel.type == "webhook":
        send_webhook(channel, payload, http)
    elif channel.type == "log":
        send_log(payload)
    else:
        raise DeliveryError(f"channel type {channel.type!r} cannot deliver", transient=False)
