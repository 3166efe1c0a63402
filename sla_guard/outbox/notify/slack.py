"""Slack: an incoming webhook, or a bot token posting with ``chat.postMessage``.

Incoming webhooks answer 200 ``ok``, or 400 (``invalid_payload``), 403 (``action_prohibited``),
404 (``channel_not_found``, ``no_service``) or 410 (``channel_is_archived``): final. The Web API
answers HTTP 200 with ``{"ok": false, "error": ...}``: ``ratelimited`` and the ``*_error``
service errors are retried, auth and channel errors are final. HTTP 429 carries ``Retry-After``.
"""

from __future__ import annotations

import re

import requests

from sla_guard.core.rules.notify_spec import SlackChannel
from sla_guard.outbox.notify.channels import DeliveryError
from sla_guard.outbox.notify.formats import slack_blocks, slack_text
from sla_guard.outbox.notify.messages import message_of
from sla_guard.outbox.notify.transport import is_transient_status, json_body, post, retry_after_s, short

TRANSIENT_API_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "service_unavailable", "internal_error", "fatal_error", "request_timeout"}
)
"""``chat.postMessage`` errors worth another try; every other error is final."""

MEMBER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
"""A Slack member id (``U024BE7LH``): mentioned in webhook messages, messaged directly by a bot."""


def message_body(payload: dict, address: str | None, channel_id: str | None = None) -> dict:
    """Block Kit JSON with an escaped fallback text; unfurling stays off so Slack never opens the
    acknowledge link itself. A member id ``address`` is mentioned (the only markup let through)."""
    message = message_of(payload)
    mention = address if address and MEMBER_ID.match(address) else None
    body = {
        "text": slack_text(message, mention),
        "blocks": slack_blocks(message, mention),
        "unfurl_links": False,
        "unfurl_media": False,
    }
    if channel_id:
        body["channel"] = channel_id
    return body


def _webhook(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    response = post(
        http,
        channel.url,
        timeout_s=channel.timeout_s,
        what="slack",
        json=message_body(payload, address),
        headers={"User-Agent": "sla-guard"},
    )
    if 200 <= response.status_code < 300:
        return
    reason = short(response.text, 80)
    raise DeliveryError(
        f"slack: HTTP {response.status_code}" + (f" {reason}" if reason else ""),
        transient=is_transient_status(response.status_code),
        retry_after_s=retry_after_s(response),
    )


def _bot(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    destination = channel.channel or address
    if not destination:
        raise DeliveryError("slack: no channel or member id for this recipient", transient=False)
    response = post(
        http,
        f"{channel.api_url}/chat.postMessage",
        timeout_s=channel.timeout_s,
        what="slack",
        json=message_body(payload, None if channel.channel is None else address, destination),
        headers={
            "Authorization": f"Bearer {channel.token}",
            "User-Agent": "sla-guard",
            "Content-Type": "application/json; charset=utf-8",
        },
    )
    body = json_body(response)
    if response.status_code == 200 and body and body.get("ok") is True:
        return
    if response.status_code != 200 or body is None:
        raise DeliveryError(
            f"slack: HTTP {response.status_code}",
            transient=is_transient_status(response.status_code),
            retry_after_s=retry_after_s(response),
        )
    error = short(body.get("error") or "unknown_error", 80)
    transient = error in TRANSIENT_API_ERRORS
    raise DeliveryError(
        f"slack: {error}", transient=transient, retry_after_s=retry_after_s(response) if transient else None
    )


def send_slack(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    """Post ``payload['text']``; ``address`` is the recipient's Slack member id or channel."""
    if channel.url:
        _webhook(channel, payload, http, address)
    else:
        _bot(channel, payload, http, address)
