"""A "Take it" press in a chat: who pressed, whether they may, and the acknowledgement it makes.

The button's value is a signed, expiring alert id (:func:`~sla_guard.timers.acknowledge.sign_press`).
The presser is matched to a person of the rules file by their chat identity (Telegram user id
or ``@username``, Slack member id); only a recipient of the alert's escalation may take the
lead. Taking it is exactly what the acknowledge link does (:func:`acknowledge`): the escalation
records who and when, and its clock's ladder climbs no further.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sla_guard.core.rules.schema import RuleSet
from sla_guard.store.models import AlertRow
from sla_guard.timers.acknowledge import AckClaim, AckOutcome, acknowledge


def telegram_person(rules: RuleSet, user_id: object, username: str | None) -> str | None:
    """The person whose ``telegram`` is this user's id (their private chat) or ``@username``."""
    wanted = {str(user_id)}
    if username:
        wanted.add("@" + username.lower())
    for name, person in rules.people.items():
        if person.telegram is not None and str(person.telegram).lower() in wanted:
            return name
    return None


def slack_person(rules: RuleSet, member_id: str | None) -> str | None:
    """The person whose ``slack`` is this member id."""
    for name, person in rules.people.items():
        if member_id and person.slack == member_id:
            return name
    return None


@dataclass(frozen=True)
class PressOutcome(AckOutcome):
    """An :class:`AckOutcome` of a press: ``taken`` now, ``already`` taken (by ``acknowledged_by``
    at ``acknowledged_at``), ``not_recipient``, or ``unknown`` alert; with the alert's payload."""

    payload: dict | None = None


def take(
    session: Session,
    alert_id: int,
    rules: RuleSet,
    person: str | None,
    expires_at: datetime,
    now: datetime,
    channel_type: str,
    channel: str | None = None,
) -> PressOutcome:
    """Acknowledge the escalation of ``alert_id`` for ``person`` if they are one of its recipients.

    The alert must have gone out on a channel of ``channel_type`` (and be ``channel``'s, when given):
    a press is only good in the chat its message was sent to.
    """
    alert = session.get(AlertRow, alert_id)
    spec = rules.channels.get(alert.channel) if alert is not None else None
    if alert is None or spec is None or spec.type != channel_type or (channel and alert.channel != channel):
        return PressOutcome("unknown")
    payload = json.loads(alert.payload)
    recipients = set(
        session.execute(select(AlertRow.recipient).where(AlertRow.escalation_id == alert.escalation_id)).scalars()
    )
    if not person or person not in recipients:
        return PressOutcome("not_recipient", alert.lead_id, payload=payload)
    outcome = acknowledge(session, AckClaim(alert.escalation_id, person, expires_at), now)
    if outcome.status == "unknown":
        return PressOutcome("unknown")
    status = "taken" if outcome.status == "acknowledged" else "already"
    return PressOutcome(status, outcome.lead_id, outcome.acknowledged_by, outcome.acknowledged_at, payload)
