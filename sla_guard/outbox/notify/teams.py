"""Microsoft Teams: an incoming webhook (a Workflows "post to a channel" URL, or a legacy connector).

Both kinds accept a message with one Adaptive Card attachment. Workflows answer 202, connectors
200 ``1``; a connector that is throttled answers 200 with a body naming HTTP 429, which is
retried like a real 429. 5xx and 429 are retried; other 4xx (a removed or wrong URL) are final.
"""

from __future__ import annotations

import requests

from sla_guard.core.rules.notify_spec import TeamsChannel
from sla_guard.outbox.http import Http, retry_after, short
from sla_guard.outbox.notify.formats import one_line, teams_card
from sla_guard.outbox.notify.messages import message_of


def card_message(payload: dict) -> dict:
    """The webhook body: one Adaptive Card with the alert, and buttons for the lead and the acknowledgement."""
    message = message_of(payload)
    return {
        "type": "message",
        "summary": one_line(payload.get("subject") or message["title"], 120),
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": teams_card(message),
            }
        ],
    }


def send_teams(channel: TeamsChannel, payload: dict, http: requests.Session, address: str | None = None) -> None:
    client = Http("teams", http, channel.timeout_s, [channel.url])
    response = client.post(channel.url, "", json=card_message(payload), headers={"User-Agent": "sla-guard"})
    status = response.status_code
    if 200 <= status < 300:
        if "HTTP error 429" in response.text:
            raise client.fail("throttled (429)", rate_limited=True, retry_after_s=retry_after(response), status=status)
        return
    reason = short(response.text, 80)
    raise client.by_status(response, f"HTTP {status}" + (f" {reason}" if reason else ""))
