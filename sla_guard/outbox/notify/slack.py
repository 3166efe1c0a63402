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
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.http import Http, json_object, retry_after, short
from sla_guard.outbox.notify.formats import slack_blocks, slack_text
from sla_guard.outbox.notify.messages import message_of

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


RATE_LIMITED_API_ERRORS = frozenset({"ratelimited", "rate_limited"})


def _webhook(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    client = Http("slack", http, channel.timeout_s, [channel.url])
    response = client.post(channel.url, "", json=message_body(payload, address), headers={"User-Agent": "sla-guard"})
    if 200 <= response.status_code < 300:
        return
    reason = short(response.text, 80)
    raise client.by_status(response, f"HTTP {response.status_code}" + (f" {reason}" if reason else ""))


def _bot(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    destination = channel.channel or address
    if not destination:
        raise DeliveryError("slack: no channel or member id for this recipient", transient=False)
    client = Http("slack", http, channel.timeout_s, [channel.token])
    response = client.post(
        f"{channel.api_url}/chat.postMessage",
        "",
        json=message_body(payload, None if channel.channel is None else address, destination),
        headers={
            "Authorization": f"Bearer {channel.token}",
            "User-Agent": "sla-guard",
            "Content-Type": "application/json; charset=utf-8",
        },
    )
    body = json_object(response)
    if response.status_code == 200 and body and body.get("ok") is True:
        return
    if response.status_code != 200 or body is None:
        raise client.by_status(response, f"HTTP {response.status_code}")
    error = short(body.get("error") or "unknown_error", 80)
    transient = error in TRANSIENT_API_ERRORS
    raise client.fail(
        error,
        transient=transient,
        rate_limited=error in RATE_LIMITED_API_ERRORS,
        retry_after_s=retry_after(response) if transient else None,
        status=response.status_code,
    )


def send_slack(channel: SlackChannel, payload: dict, http: requests.Session, address: str | None) -> None:
    """Post ``payload['text']``; ``address`` is the recipient's Slack member id or channel."""
    if channel.url:
        _webhook(channel, payload, http, address)
    else:
        _bot(channel, payload, http, address)
