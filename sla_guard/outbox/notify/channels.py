"""Channel clients: send one alert payload, or raise a delivery error saying whether to retry."""

from __future__ import annotations

import json
import logging

import requests

from sla_guard.core.rules.schema import LOG_CHANNEL, Channel

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


def _webhook_headers(payload: dict) -> dict:
    """JSON headers plus the id a receiver can drop a repeat by: the alert's, or a digest's."""
    headers = {"Content-Type": "application/json", "User-Agent": "sla-guard"}
    if payload.get("alert_id") is not None:
        headers["X-SLA-Guard-Alert-Id"] = str(payload["alert_id"])
    if payload.get("digest_id") is not None:
        headers["X-SLA-Guard-Digest-Id"] = str(payload["digest_id"])
    return headers


def send_webhook(channel: Channel, payload: dict, http: requests.Session) -> None:
    """POST the alert JSON. 2xx is delivered; 408, 429 and 5xx are retried; other 4xx are final."""
    try:
        response = http.post(
            channel.url,
            data=json.dumps(payload, ensure_ascii=False).encode(),
            headers=_webhook_headers(payload),
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


def send(
    channel_name: str,
    channel: Channel | None,
    payload: dict,
    http: requests.Session,
    address: str | int | None = None,
    settings: dict | None = None,
) -> None:
    """Deliver ``payload`` through the named channel; ``address`` is the recipient's own address
    on it (a Telegram chat id, a Slack member id, an e-mail address, a CRM user id) when the
    channel names none; ``settings`` hold the CRM REST settings the ``crm`` channel uses."""
    if channel_name == LOG_CHANNEL and channel is None:
        send_log(payload)
        return
    if channel is None:
        raise DeliveryError(f"channel {channel_name!r} is not in the rules file", transient=False)
    if channel.type == "webhook":
        send_webhook(channel, payload, http)
    elif channel.type == "log":
        send_log(payload)
    elif channel.type in CHAT_TYPES:
        from sla_guard.core.rules.notify_spec import typed_channel

        try:
            spec = typed_channel(channel)
        except (ValueError, KeyError):
            raise DeliveryError(f"channel {channel_name!r} is misconfigured", transient=False) from None
        _send_typed(spec, payload, http, None if address is None else str(address), settings)
    else:
        raise DeliveryError(f"channel type {channel.type!r} cannot deliver", transient=False)


CHAT_TYPES = ("telegram", "slack", "email", "teams", "crm")
"""Channel types whose client lives in a module of its own."""


def _send_typed(spec, payload: dict, http: requests.Session, address: str | None, settings: dict | None) -> None:
    if spec.type == "telegram":
        from sla_guard.outbox.notify.telegram import send_telegram

        send_telegram(spec, payload, http, address)
    elif spec.type == "slack":
        from sla_guard.outbox.notify.slack import send_slack

        send_slack(spec, payload, http, address)
    elif spec.type == "email":
        from sla_guard.outbox.notify.smtp import send_email

        send_email(spec, payload, address)
    elif spec.type == "crm":
        from sla_guard.outbox.notify.crm import send_crm

        send_crm(spec, payload, http, address, settings)
    else:
        from sla_guard.outbox.notify.teams import send_teams

        send_teams(spec, payload, http)


def channel_secrets(channel: Channel | None) -> tuple[str, ...]:
    """The channel's secret values (tokens, passwords, webhook URLs), for redaction."""
    if channel is None:
        return ()
    from sla_guard.core.rules.notify_spec import typed_channel

    try:
        return typed_channel(channel).secrets()
    except (ValueError, KeyError):
        raw = {**channel.model_dump(exclude_unset=True), **(channel.model_extra or {})}
        return tuple(str(raw[key]) for key in ("url", "token", "password") if raw.get(key))
