"""``GET /ack/<token>``: the acknowledge link of an alert. No login: the signed token is the credential.

The token names the escalation and the person it was sent to and expires
(``SLA_GUARD_ACK_TTL_S``). Opening it marks the escalation acknowledged by that person, once;
its clock's ladder then climbs no further. Without ``SLA_GUARD_ACK_SECRET`` the endpoint is off
(404). Link previews (chat apps fetching the URL to draw a card) and ``HEAD`` requests do not
acknowledge: they get a page with a button that does (``POST`` to the same address).
"""

from __future__ import annotations

import html
import logging

from flask import Blueprint, Response, abort, current_app, request

from sla_guard.config import of_app
from sla_guard.outbox.notify.context import person_zone
from sla_guard.outbox.notify.messages import texts
from sla_guard.outbox.notify.routing import person_locale
from sla_guard.outbox.notify.spoken import local_time
from sla_guard.store.db import get_db
from sla_guard.timers.acknowledge import BadToken, ExpiredToken, acknowledge, verify_token

log = logging.getLogger("sla_guard.ack")

bp = Blueprint("ack", __name__)

PREVIEW_AGENTS = (
    "slackbot",
    "telegrambot",
    "twitterbot",
    "facebookexternalhit",
    "discordbot",
    "whatsapp",
    "skypeuripreview",
    "linkedinbot",
    "microsoftpreview",
    "googlebot",
    "bingbot",
    "preview",
)
"""User-agent fragments of link-preview fetchers: they see the page, they never acknowledge."""


def _page(status: int, message: str, title: str, button: str | None = None) -> Response:
    form = f'<form method="post"><button type="submit">{html.escape(button)}</button></form>' if button else ""
    body = (
        f'<!doctype html><html><head><meta charset="utf-8"><meta name="robots" content="noindex">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
        f"</head><body><p>{html.escape(message)}</p>{form}</body></html>"
    )
    response = Response(body, status=status, mimetype="text/html")
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"})
    return response


def _is_preview() -> bool:
    agent = (request.headers.get("User-Agent") or "").lower()
    return request.method == "HEAD" or any(fragment in agent for fragment in PREVIEW_AGENTS)


@bp.route("/ack/<token>", methods=["GET", "POST"])
def ack(token: str):
    secret = of_app(current_app).ack_secret
    if not secret:
        abort(404)
    now = current_app.extensions["sla_guard.clock"]()
    rules = current_app.extensions["sla_guard.rules"].current()
    try:
        claim = verify_token(secret, token, now)
    except ExpiredToken:
        page = texts(rules.spec.locale)["ack_page"]
        return _page(410, page["expired"], page["title"])
    except BadToken:
        page = texts(rules.spec.locale)["ack_page"]
        return _page(404, page["invalid"], page["title"])
    page = texts(person_locale(rules, claim.recipient or None))["ack_page"]
    if request.method != "POST" and _is_preview():
        return _page(200, page["preview"], page["title"], page["button"])
    with get_db(current_app).session() as session:
        outcome = acknowledge(session, claim, now)
    if outcome.status == "unknown":
        return _page(404, page["invalid"], page["title"])
    if outcome.status == "acknowledged":
        log.info(
            "escalation acknowledged",
            extra={"escalation_id": claim.escalation_id, "lead_id": outcome.lead_id, "by": claim.recipient},
        )
        return _page(
            200, page["acknowledged"].format(person=claim.recipient or "—", lead_id=outcome.lead_id), page["title"]
        )
    at = "—"
    if outcome.acknowledged_at:  # in the reader's zone, named when it is not the team's
        locale, zone = person_locale(rules, claim.recipient or None), person_zone(rules, claim.recipient or None)
        at = local_time(outcome.acknowledged_at, locale, zone, rules.spec.timezone, today=now)
    return _page(
        200,
        page["already"].format(person=outcome.acknowledged_by or "—", lead_id=outcome.lead_id, at=at),
        page["title"],
    )
