"""Alert payloads and texts, in English and Russian. Pure."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import yaml

from sla_guard.core.rules.durations import format_duration

LOCALES = ("en", "ru")
"""Languages of alert and digest texts."""

_TEMPLATES = Path(__file__).with_name("templates")
"""``<locale>.yaml`` files holding every text sla-guard sends, by section and key."""


@functools.cache
def texts(locale: str) -> dict[str, dict[str, str]]:
    """The templates of ``locale`` (English for an unknown one), loaded once per process."""
    name = locale if locale in LOCALES else "en"
    with open(_TEMPLATES / f"{name}.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def lead_label(lead: dict) -> str:
    """``ACME request #L-1001``, or the bare id when the lead has no name."""
    return f"{lead['name']} #{lead['lead_id']}" if lead.get("name") else str(lead.get("lead_id"))


def alert_text(
    kind: str,
    level: int,
    lead: dict,
    rule: str,
    due_at: datetime,
    late_by_s: int,
    locale: str = "en",
    ack_url: str | None = None,
    instead_of: str | None = None,
) -> str:
    """The alert's text: the lead's name, source, owner, how late, the rule, and links to the lead and to acknowledge."""
    alert = texts(locale)["alert"]
    template = alert.get(kind, alert["first_touch.breach"])
    text = template.format(**_fields(lead, rule, due_at, late_by_s, alert["nobody"]))
    if level > 1:
        text += f" ({alert['level'].format(level=level)})"
    if instead_of:
        text += " " + alert["instead_of"].format(person=instead_of)
    if lead.get("url"):
        text += f" {lead['url']}"
    if ack_url:
        text += "\n" + alert["ack"].format(url=ack_url)
    return text


def alert_subject(kind: str, lead: dict, rule: str, due_at: datetime, late_by_s: int, locale: str = "en") -> str:
    """A one-line subject for e-mail and card summaries."""
    subjects = texts(locale)["subject"]
    template = subjects.get(kind, subjects["default"])
    return template.format(**_fields(lead, rule, due_at, late_by_s, texts(locale)["alert"]["nobody"]))


def _fields(lead: dict, rule: str, due_at: datetime, late_by_s: int, nobody: str) -> dict:
    return {
        "lead": lead_label(lead),
        "source": lead.get("source") or "—",
        "owner": lead.get("owner") or nobody,
        "rule": rule,
        "stage": lead.get("stage") or "—",
        "due": due_at.strftime("%Y-%m-%d %H:%M UTC"),
        "late": format_duration_seconds(late_by_s),
    }


def format_duration_seconds(seconds: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=max(0, int(seconds))))


def alert_payload(
    *,
    alert_id: int | None,
    escalation_id: int,
    kind: str,
    level: int,
    lead: dict,
    rule: str,
    clock: str,
    due_at: datetime,
    fired_at: datetime,
    recipient: str | None,
    role: str | None,
    channel: str,
    locale: str = "en",
    ack_url: str | None = None,
    instead_of: str | None = None,
) -> dict:
    """The alert JSON a webhook channel receives (the contract in the README).

    ``ack_url`` is the recipient's signed acknowledge link (None when acknowledgements are off);
    ``instead_of`` names the person whose quiet hours sent this alert to the on-duty person.
    """
    late_by_s = max(0, round((fired_at - due_at).total_seconds()))
    return {
        "alert_id": alert_id,
        "escalation_id": escalation_id,
        "kind": kind,
        "level": level,
        "clock": clock,
        "lead_id": lead["lead_id"],
        "lead_name": lead.get("name"),
        "source": lead.get("source"),
        "stage": lead.get("stage"),
        "team": lead.get("team"),
        "owner": lead.get("owner"),
        "recipient": recipient,
        "role": role,
        "channel": channel,
        "rule": rule,
        "due_at": due_at.isoformat().replace("+00:00", "Z"),
        "fired_at": fired_at.isoformat().replace("+00:00", "Z"),
        "late_by_s": late_by_s,
        "lead_url": lead.get("url"),
        "text": alert_text(kind, level, lead, rule, due_at, late_by_s, locale, ack_url, instead_of),
        "ack_url": ack_url,
        "instead_of": instead_of,
        "locale": locale,
        "subject": alert_subject(kind, lead, rule, due_at, late_by_s, locale),
        "labels": texts(locale)["label"],
    }
