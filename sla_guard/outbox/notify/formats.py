"""Each channel's rich format of a message, escaped for that medium. Pure.

A lead's name, stage, owner, rule and task come from CRMs and rules files, so every piece of
them is text, never markup, whatever it contains:

- Telegram: HTML parse mode, ``<``, ``>``, ``&`` and ``"`` as entities; an inline keyboard with
  "Open lead" (a URL button) and "Take it" (a callback button carrying the signed press).
- Slack: Block Kit; mrkdwn text with ``&``, ``<`` and ``>`` as entities, so ``<!channel>`` or
  ``<https://evil|text>`` in a name stay literal; buttons "Open lead" and "Take it".
- Teams: an Adaptive Card whose texts are ``TextRun``s of a ``RichTextBlock`` (no Markdown is
  read there) with ``{{`` broken up (no date functions); actions open the lead and the
  acknowledge link.
- E-mail: a subject without CR, LF or other control characters; a text part and an HTML part
  with every value escaped.

Links are only ever made from http(s) addresses.
"""

from __future__ import annotations

import html
import re

from sla_guard.outbox.notify.messages import http_url, plain_text

TAKE_ACTION = "sla_guard.take"
"""``action_id`` of Slack's "Take it" button (and the prefix nothing else uses)."""

OPEN_ACTION = "sla_guard.open"
"""``action_id`` of Slack's "Open lead" link button."""

TELEGRAM_MAX_TEXT = 4096
"""Telegram's limit on a message's text, in characters (after entities are parsed)."""

SLACK_MAX_TEXT = 3000
"""Slack's limit on a section's text."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")


def one_line(text: str, limit: int = 200) -> str:
    """``text`` without CR, LF or other control characters (a mail header, a button), bounded."""
    text = " ".join(_CONTROL.sub(" ", str(text)).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts_line(message: dict) -> str | None:
    facts = message.get("facts") or []
    return " · ".join(f"{label}: {value}" for label, value in facts) or None


def _footer(message: dict) -> str | None:
    return message.get("taken")


# --- Telegram ---------------------------------------------------------------------------------


def telegram_escape(text: str) -> str:
    """Text for Telegram's HTML parse mode: the entities it supports, nothing else touched."""
    return html.escape(str(text), quote=False).replace('"', "&quot;")


def telegram_html(message: dict) -> str:
    """The message in Telegram HTML: the title bold, then details and facts, all escaped."""
    parts = [f"<b>{telegram_escape(message['title'])}</b>"]
    parts.extend(telegram_escape(line) for line in message.get("lines") or [])
    facts = _facts_line(message)
    if facts:
        parts.append(f"<i>{telegram_escape(facts)}</i>")
    if _footer(message):
        parts.append(f"✅ {telegram_escape(_footer(message))}")
    text = "\n".join(parts)
    if len(text) > TELEGRAM_MAX_TEXT:  # never cut an entity or a tag in two: fall back to the escaped title
        text = f"<b>{telegram_escape(one_line(message['title'], 1000))}</b>"
    return text


def telegram_keyboard(message: dict) -> dict | None:
    """The inline keyboard: "Open lead" (URL) and, until someone takes it, "Take it" (callback)."""
    labels = message.get("labels") or {}
    row = []
    if http_url(message.get("lead_url")):
        row.append({"text": labels.get("open", "Open lead"), "url": message["lead_url"]})
    if message.get("press") and not message.get("taken"):
        row.append({"text": labels.get("ack", "Take it"), "callback_data": message["press"]})
    elif http_url(message.get("ack_url")) and not message.get("taken"):
        row.append({"text": labels.get("ack", "Take it"), "url": message["ack_url"]})
    return {"inline_keyboard": [row]} if row else None


def telegram_content(message: dict) -> dict:
    """The message's part of ``sendMessage`` and ``editMessageText``: HTML, keyboard, no link preview."""
    content = {"text": telegram_html(message), "parse_mode": "HTML", "link_preview_options": {"is_disabled": True}}
    keyboard = telegram_keyboard(message)
    if keyboard:
        content["reply_markup"] = keyboard
    return content


# --- Slack ------------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Text for Slack mrkdwn: ``&``, ``<`` and ``>`` as the entities Slack reads back as text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(message: dict, mention: str | None = None) -> str:
    """The notification text (also shown where blocks are not): escaped, with an optional ``<@member>``."""
    text = plain_text({**message, "ack_url": None})
    if len(text) > SLACK_MAX_TEXT // 2:  # cut before escaping, so no entity is cut in two
        text = text[: SLACK_MAX_TEXT // 2 - 1] + "…"
    text = slack_escape(text)
    return f"<@{mention}> {text}" if mention else text


def slack_blocks(message: dict, mention: str | None = None) -> list[dict]:
    """Block Kit: a section with the bold title and details, a context line of facts, the buttons."""
    head = f"*{slack_escape(one_line(message['title'], 500))}*"
    if mention:
        head = f"<@{mention}> {head}"
    text = head
    for line in message.get("lines") or []:
        line = slack_escape(one_line(line, 500))
        if len(text) + len(line) + 3 > SLACK_MAX_TEXT:
            text += "\n…"
            break
        text += "\n" + line
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    facts = _facts_line(message)
    if facts:
        blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": facts[:2000], "emoji": False}]})
    if _footer(message):
        blocks.append(
            {"type": "context", "elements": [{"type": "plain_text", "text": "✅ " + _footer(message), "emoji": True}]}
        )
    labels = message.get("labels") or {}
    buttons = []
    if http_url(message.get("lead_url")):
        buttons.append(
            {
                "type": "button",
                "action_id": OPEN_ACTION,
                "text": {"type": "plain_text", "text": labels.get("open", "Open lead")},
                "url": message["lead_url"][:3000],
            }
        )
    if message.get("press") and not message.get("taken"):
        buttons.append(
            {
                "type": "button",
                "action_id": TAKE_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": labels.get("ack", "Take it")},
                "value": message["press"],
            }
        )
    elif message.get("ack_url") and not message.get("taken"):
        buttons.append(
            {
                "type": "button",
                "action_id": "sla_guard.ack_link",
                "text": {"type": "plain_text", "text": labels.get("ack", "Take it")},
                "url": message["ack_url"],
            }
        )
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


# --- Teams ------------------------------------------------------------------------------------


def teams_escape(text: str) -> str:
    """Text for a ``TextRun``: Markdown is not read there; ``{{`` would start a date function."""
    return str(text).replace("{{", "{\u200b{").replace("}}", "}\u200b}")


def _run(text: str, **style) -> dict:
    return {"type": "TextRun", "text": teams_escape(text), **style}


def teams_card(message: dict) -> dict:
    """An Adaptive Card 1.4: title, details, facts as literal text runs; open-lead and acknowledge actions."""
    body = [{"type": "RichTextBlock", "inlines": [_run(message["title"], weight="Bolder", size="Medium")]}]
    for line in message.get("lines") or []:
        body.append({"type": "RichTextBlock", "inlines": [_run(line)]})
    facts = _facts_line(message)
    if facts:
        body.append({"type": "RichTextBlock", "inlines": [_run(facts, isSubtle=True)]})
    if _footer(message):
        body.append({"type": "RichTextBlock", "inlines": [_run("✅ " + _footer(message))]})
    labels = message.get("labels") or {}
    actions = []
    if http_url(message.get("lead_url")):
        actions.append({"type": "Action.OpenUrl", "title": labels.get("open", "Open lead"), "url": message["lead_url"]})
    if http_url(message.get("ack_url")) and not message.get("taken"):
        actions.append({"type": "Action.OpenUrl", "title": labels.get("ack", "Take it"), "url": message["ack_url"]})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return card


# --- e-mail -----------------------------------------------------------------------------------


def email_subject(message: dict) -> str:
    return one_line(message["title"], 200)


def email_html(message: dict) -> str:
    """The HTML part: every value escaped, links only to http(s) addresses."""
    esc = html.escape
    parts = [f"<p><strong>{esc(message['title'])}</strong></p>"]
    parts.extend(f"<p>{esc(line)}</p>" for line in message.get("lines") or [])
    facts = message.get("facts") or []
    if facts:
        rows = "".join(f'<tr><th align="left">{esc(str(k))}</th><td>{esc(str(v))}</td></tr>' for k, v in facts)
        parts.append(f"<table>{rows}</table>")
    labels = message.get("labels") or {}
    links = []
    if http_url(message.get("lead_url")):
        links.append(f'<a href="{esc(message["lead_url"])}">{esc(labels.get("open", "Open lead"))}</a>')
    if http_url(message.get("ack_url")) and not message.get("taken"):
        links.append(f'<a href="{esc(message["ack_url"])}">{esc(labels.get("ack", "Take it"))}</a>')
    if links:
        parts.append("<p>" + " · ".join(links) + "</p>")
    return '<!doctype html><html><head><meta charset="utf-8"></head><body>' + "\n".join(parts) + "</body></html>"
