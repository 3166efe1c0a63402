"""Telegram: the Bot API's ``sendMessage``, ``POST {api_url}/bot<token>/sendMessage``.

The Bot API answers ``{"ok": false, "error_code": ..., "description": ..., "parameters": {...}}``
on failure. 429 carries ``parameters.retry_after`` (seconds): retried after that long. 5xx and
timeouts are retried. 401 (revoked token), 404 (malformed token), 403 (bot blocked or kicked)
and 400 (chat not found, chat upgraded to a supergroup, text refused) fail for good.
"""

from __future__ import annotations

import requests

from sla_guard.core.rules.notify_spec import TelegramChannel
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.http import Http, is_transient_status, json_object, short
from sla_guard.outbox.notify.formats import telegram_content
from sla_guard.outbox.notify.messages import message_of


def message_body(chat_id: str | int, payload: dict) -> dict:
    """The ``sendMessage`` JSON: escaped HTML, the inline keyboard, no link preview.

    Link previews stay off: a preview would fetch the acknowledge link on the reader's behalf.
    """
    return {"chat_id": chat_id, **telegram_content(message_of(payload))}


def send_telegram(channel: TelegramChannel, payload: dict, http: requests.Session, address: str | int | None) -> None:
    """Send ``payload['text']`` to the channel's chat, or to the recipient's chat id ``address``."""
    chat_id = channel.chat if channel.chat is not None else address
    if chat_id is None or chat_id == "":
        raise DeliveryError("telegram: no chat id for this recipient", transient=False)
    client = Http("telegram", http, channel.timeout_s, [channel.token])
    response = client.post(
        f"{channel.api_url}/bot{channel.token}/sendMessage",
        "",
        json=message_body(chat_id, payload),
        headers={"User-Agent": "sla-guard"},
    )
    body = json_object(response)
    if response.status_code == 200 and body and body.get("ok") is True:
        return
    status = response.status_code
    code = body.get("error_code", status) if body else status
    reason = short(body.get("description")) if body else ""
    parameters = body.get("parameters") if body and isinstance(body.get("parameters"), dict) else {}
    if parameters.get("migrate_to_chat_id"):
        reason += f" (the group is now chat {parameters['migrate_to_chat_id']})"
    message = f"HTTP {status}" + (f" {reason}" if reason else "")
    if code in (401, 404) or status in (401, 404):
        message += " (check the bot token)"
    # A proxy may wrap the Bot API's own error code in another status: a retryable one of the two decides.
    decisive = status if is_transient_status(status) or not isinstance(code, int) else code
    raise client.by_status(response, message, body=body, status=decisive)
