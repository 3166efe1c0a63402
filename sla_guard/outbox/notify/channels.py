"""Channel clients, registered by channel type: send one payload, or raise a
:class:`~sla_guard.exceptions.DeliveryError` saying whether to retry.

Every client speaks HTTP through :mod:`sla_guard.outbox.http` (e-mail speaks SMTP and sorts
its reply codes into the same three kinds of error).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import requests

from sla_guard.core.rules.notify_spec import typed_channel
from sla_guard.core.rules.schema import LOG_CHANNEL, Channel
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.http import Http
from sla_guard.outbox.notify.crm import send_crm
from sla_guard.outbox.notify.slack import send_slack
from sla_guard.outbox.notify.smtp import send_email
from sla_guard.outbox.notify.teams import send_teams
from sla_guard.outbox.notify.telegram import send_telegram

log = logging.getLogger("sla_guard.alerts")

Sender = Callable[..., None]
"""``sender(channel, payload, http, address, settings)``: deliver or raise :class:`DeliveryError`."""

SENDERS: dict[str, Sender] = {}
"""The client of each channel type that needs one (the ``log`` type writes to the log)."""


def register(channel_type: str, sender: Sender) -> None:
    """Make ``sender`` the client of ``channel_type``."""
    SENDERS[channel_type] = sender


def get_sender(channel_type: str) -> Sender | None:
    return SENDERS.get(channel_type)


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
    client = Http("", http, channel.timeout_s, [channel.url])
    response = client.post(
        channel.url, "", data=json.dumps(payload, ensure_ascii=False).encode(), headers=_webhook_headers(payload)
    )
    if not 200 <= response.status_code < 300:
        raise client.by_status(response, f"HTTP {response.status_code}")


def send_log(payload: dict) -> None:
    log.warning(payload["text"], extra={"alert": payload, "lead_id": payload["lead_id"]})


register("webhook", lambda channel, payload, http, address, settings: send_webhook(channel, payload, http))
register("telegram", lambda spec, payload, http, address, settings: send_telegram(spec, payload, http, address))
register("slack", lambda spec, payload, http, address, settings: send_slack(spec, payload, http, address))
register("email", lambda spec, payload, http, address, settings: send_email(spec, payload, address))
register("teams", lambda spec, payload, http, address, settings: send_teams(spec, payload, http))
register("crm", send_crm)

TYPED = ("telegram", "slack", "email", "teams", "crm")
"""Channel types whose settings are checked into a typed spec before sending."""


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
    if channel is None:
        if channel_name == LOG_CHANNEL:
            send_log(payload)
            return
        raise DeliveryError(f"channel {channel_name!r} is not in the rules file", transient=False)
    if channel.type == "log":
        send_log(payload)
        return
    sender = get_sender(channel.type)
    if sender is None:
        raise DeliveryError(f"channel type {channel.type!r} cannot deliver", transient=False)
    spec = channel
    if channel.type in TYPED:
        try:
            spec = typed_channel(channel)
        except (ValueError, KeyError):
            raise DeliveryError(f"channel {channel_name!r} is misconfigured", transient=False) from None
    sender(spec, payload, http, None if address is None else str(address), settings)


def channel_secrets(channel: Channel | None) -> tuple[str, ...]:
    """The channel's secret values (tokens, passwords, webhook URLs), for redaction."""
    if channel is None:
        return ()
    try:
        return typed_channel(channel).secrets()
    except (ValueError, KeyError):
        raw = {**channel.model_dump(exclude_unset=True), **(channel.model_extra or {})}
        return tuple(str(raw[key]) for key in ("url", "token", "password") if raw.get(key))
