"""Acting from the chat: the "Take it" button of Telegram and Slack alerts.

- ``POST /chat/telegram/<channel>``: the bot's webhook (``setWebhook`` with ``secret_token``).
  Telegram proves itself with ``X-Telegram-Bot-Api-Secret-Token`` equal to
  ``SLA_GUARD_TELEGRAM_WEBHOOK_SECRET``; each update is handled once (its ``update_id``).
- ``POST /chat/slack``: the Slack app's interactivity request URL. Slack signs each request
  (``X-Slack-Signature``: ``v0`` HMAC-SHA256 with ``SLA_GUARD_SLACK_SIGNING_SECRET`` over the
  timestamp and the raw body); requests older than five minutes, or seen before, are refused.

A press carries the signed, expiring alert id the button was made with. The presser must be a
person of the rules file (by their ``telegram`` id or ``@username``, or ``slack`` member id) and
a recipient of the alert's escalation; then the escalation is acknowledged exactly as by the
acknowledge link, and the message is edited to say who took the lead and when (Telegram's
``editMessageText`` and ``answerCallbackQuery``; Slack's ``response_url``). Each endpoint is off
(404) until its secret and ``SLA_GUARD_ACK_SECRET`` are set.
"""

from __future__ import annotations

import hashlib
import json
import logging

import requests
from flask import Blueprint, current_app, jsonify, request
from redis.exceptions import RedisError

from sla_guard.config import of_app
from sla_guard.core.rules.notify_spec import TelegramChannel, typed_channel
from sla_guard.endpoints import error
from sla_guard.exceptions import DeliveryError, Unauthorized
from sla_guard.outbox.http import Http
from sla_guard.outbox.notify.formats import TAKE_ACTION, slack_blocks, slack_text, telegram_content
from sla_guard.outbox.notify.messages import taken_message, texts
from sla_guard.outbox.notify.spoken import local_time
from sla_guard.security import verify_slack, verify_telegram
from sla_guard.store.db import get_db
from sla_guard.timers.acknowledge import BadToken, ExpiredToken, verify_press
from sla_guard.timers.press import PressOutcome, slack_person, take, telegram_person

log = logging.getLogger("sla_guard.chat")

bp = Blueprint("chat", __name__)

SEEN_TTL_S = 86400
"""How long a handled update or request is remembered, so a replay of it is refused."""

CALL_TIMEOUT_S = 3.0
"""Timeout of the calls back to Telegram and Slack made while answering a press."""


def _first_time(key: str) -> bool:
    """True the first time ``key`` is seen (Redis ``SET NX``); a replay gets False."""
    redis = current_app.extensions["sla_guard.redis"]
    return bool(redis.set(f"{of_app(current_app).queue}:chat-seen:{key}", 1, nx=True, ex=SEEN_TTL_S))


def _press(value: object, person: str | None, channel_type: str, channel: str | None = None) -> PressOutcome:
    """Check the button's value and take the lead for ``person``; ``invalid`` and ``expired`` when it cannot."""
    now = current_app.extensions["sla_guard.clock"]()
    try:
        alert_id, expires_at = verify_press(of_app(current_app).ack_secret, str(value or ""), now)
    except ExpiredToken:
        return PressOutcome("expired")
    except BadToken:
        return PressOutcome("invalid")
    rules = current_app.extensions["sla_guard.rules"].current()
    with get_db(current_app).session() as session:
        outcome = take(session, alert_id, rules, person, expires_at, now, channel_type, channel)
    log.info(
        "chat press",
        extra={
            "alert_id": alert_id,
            "lead_id": outcome.lead_id,
            "by": person,
            "press": outcome.status,
            "via": channel_type,
        },
    )
    return outcome


def _reply(outcome: PressOutcome, locale: str) -> str:
    """What the presser is told."""
    words = texts(locale)["chat"]
    if outcome.status in ("taken", "already"):
        rules = current_app.extensions["sla_guard.rules"].current()
        zone = (outcome.payload or {}).get("timezone") or rules.spec.timezone
        at = outcome.acknowledged_at
        when = local_time(at, locale, zone, rules.spec.timezone, today=at) if at else "—"
        return words[outcome.status].format(lead_id=outcome.lead_id, person=outcome.acknowledged_by or "—", at=when)
    return words.get(outcome.status, words["invalid"])


def _taken(outcome: PressOutcome) -> dict | None:
    """The alert's message, now saying who took the lead; None when the press changed nothing."""
    if outcome.status not in ("taken", "already") or outcome.payload is None or outcome.acknowledged_at is None:
        return None
    rules = current_app.extensions["sla_guard.rules"].current()
    return taken_message(outcome.payload, outcome.acknowledged_by or "—", outcome.acknowledged_at, rules.spec.timezone)


def _locale(outcome: PressOutcome) -> str:
    rules = current_app.extensions["sla_guard.rules"].current()
    return (outcome.payload or {}).get("locale") or rules.spec.locale


# --- Telegram ---------------------------------------------------------------------------------


def _bot_call(channel: TelegramChannel, method: str, body: dict, http: requests.Session) -> None:
    """Call the Bot API; a failure is logged (the acknowledgement already stands)."""
    try:
        client = Http("telegram", http, CALL_TIMEOUT_S, [channel.token])
        response = client.post(f"{channel.api_url}/bot{channel.token}/{method}", method, json=body)
        if response.status_code != 200:
            log.warning("telegram call failed", extra={"method": method, "status": response.status_code})
    except DeliveryError as exc:
        log.warning("telegram call failed", extra={"method": method, "error": str(exc)})


@bp.post("/chat/telegram/<channel_name>")
def telegram_update(channel_name: str):
    secret = of_app(current_app).telegram_webhook_secret
    if not secret or not of_app(current_app).ack_secret:
        return error(404, "Telegram buttons are not enabled")
    try:
        verify_telegram(secret, request.headers.get("X-Telegram-Bot-Api-Secret-Token"))
    except Unauthorized as exc:
        return error(401, str(exc))
    rules = current_app.extensions["sla_guard.rules"].current()
    spec = rules.channels.get(channel_name)
    try:
        channel = typed_channel(spec) if spec is not None else None
    except (ValueError, KeyError):
        channel = None
    if not isinstance(channel, TelegramChannel):
        return error(404, "no telegram channel of that name", field="channel")
    update = request.get_json(silent=True)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return error(400, "the body must be a Telegram update", field="update_id")
    query = update.get("callback_query")
    if not isinstance(query, dict):
        return jsonify({"ok": True, "ignored": True})
    try:
        if not _first_time(f"tg:{channel_name}:{update['update_id']}"):
            return error(409, "this update was already handled", field="update_id")
    except RedisError:
        return error(503, "cannot check for replays now; try again")
    sender = query.get("from") if isinstance(query.get("from"), dict) else {}
    person = telegram_person(
        rules, sender.get("id"), sender.get("username") if isinstance(sender.get("username"), str) else None
    )
    outcome = _press(query.get("data"), person, "telegram", channel_name)
    with requests.Session() as http:
        _bot_call(
            channel,
            "answerCallbackQuery",
            {
                "callback_query_id": str(query.get("id", "")),
                "text": _reply(outcome, _locale(outcome))[:200],
                "show_alert": outcome.status not in ("taken", "already"),
            },
            http,
        )
        message = _taken(outcome)
        where = query.get("message") if isinstance(query.get("message"), dict) else None
        if message is not None and where and isinstance(where.get("chat"), dict):
            edit = {"chat_id": where["chat"].get("id"), "message_id": where.get("message_id")}
            edit.update(telegram_content(message))
            _bot_call(channel, "editMessageText", edit, http)
    return jsonify({"ok": True, "press": outcome.status})


# --- Slack ------------------------------------------------------------------------------------


@bp.post("/chat/slack")
def slack_action():
    secret = of_app(current_app).slack_signing_secret
    if not secret or not of_app(current_app).ack_secret:
        return error(404, "Slack buttons are not enabled")
    body = request.get_data(cache=True)
    signature = request.headers.get("X-Slack-Signature")
    now = current_app.extensions["sla_guard.clock"]()
    try:
        verify_slack(secret, request.headers.get("X-Slack-Request-Timestamp"), signature, body, now.timestamp())
    except Unauthorized as exc:
        return error(401, str(exc))
    try:
        if not _first_time("slack:" + hashlib.sha256(str(signature).encode()).hexdigest()):
            return error(409, "this request was already handled")
    except RedisError:
        return error(503, "cannot check for replays now; try again")
    try:
        action = json.loads(request.form.get("payload") or "")
    except ValueError:
        action = None
    if not isinstance(action, dict):
        return error(400, "the body must carry an interaction payload", field="payload")
    presses = [
        item for item in action.get("actions") or [] if isinstance(item, dict) and item.get("action_id") == TAKE_ACTION
    ]
    if action.get("type") != "block_actions" or not presses:
        return "", 200  # "Open lead" and other buttons need no answer
    user = action.get("user") if isinstance(action.get("user"), dict) else {}
    rules = current_app.extensions["sla_guard.rules"].current()
    person = slack_person(rules, user.get("id") if isinstance(user.get("id"), str) else None)
    outcome = _press(presses[0].get("value"), person, "slack")
    response_url = action.get("response_url")
    if isinstance(response_url, str) and response_url.startswith(("https://", "http://")):
        message = _taken(outcome)
        if message is not None:
            answer = {"replace_original": True, "text": slack_text(message), "blocks": slack_blocks(message)}
        else:
            answer = {
                "response_type": "ephemeral",
                "replace_original": False,
                "text": _reply(outcome, _locale(outcome)),
            }
        with requests.Session() as http:
            try:
                response = Http("slack", http, CALL_TIMEOUT_S).post(response_url, "response_url", json=answer)
                if response.status_code != 200:
                    log.warning("slack response_url failed", extra={"status": response.status_code})
            except DeliveryError as exc:
                log.warning("slack response_url failed", extra={"error": str(exc)})
    return "", 200
