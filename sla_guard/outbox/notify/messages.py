"""Alert payloads and texts, in English and Russian. Pure.

Every alert kind has a text of its own (``templates/<locale>.yaml``): a title and a detail
line, filled with the lead's facts, the deadline in the reader's time zone, how long the SLA
was and how late the alert is, spoken as people say durations. The result is a *message*: plain
parts (title, lines, facts, links) that each channel formats and escapes for its medium
(:mod:`sla_guard.outbox.notify.formats`); ``text`` is its plain-text form.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from sla_guard.outbox.notify.spoken import local_time, sla_length, spoken_duration

LOCALES = ("en", "ru")
"""Languages of alert and digest texts."""

_TEMPLATES = Path(__file__).with_name("templates")
"""``<locale>.yaml`` files holding every text sla-guard sends, by section and key."""

LATE_AFTER = timedelta(minutes=1)
"""An alert sent this long or more after its deadline says how long ago the deadline passed."""


@functools.cache
def texts(locale: str) -> dict:
    """The templates of ``locale`` (English for an unknown one), loaded once per process."""
    name = locale if locale in LOCALES else "en"
    with open(_TEMPLATES / f"{name}.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def lead_label(lead: dict) -> str:
    """``ACME request #L-1001``, or the bare id when the lead has no name."""
    return f"{lead['name']} #{lead['lead_id']}" if lead.get("name") else str(lead.get("lead_id"))


def variant(kind: str, level: int, reassigned: bool) -> str:
    """The text an alert reads: its kind, or the kind's ``escalation`` / ``reassigned`` text.

    ``first_touch.breach`` at level 2 and up is an escalation; any step that hands the lead
    to someone else says so. Warnings, follow-up tasks and ops alerts keep their kind.
    """
    family, _, what = kind.partition(".")
    if what in ("breach", "missed"):
        if reassigned:
            return f"{family}.reassigned"
        if level > 1:
            return f"{family}.escalation"
    return kind


def http_url(url: object) -> str | None:
    """``url`` when it is an http(s) address; anything else never becomes a link."""
    text = str(url or "").strip()
    return text if text.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in text) else None


def alert_message(
    *,
    kind: str,
    level: int,
    lead: dict,
    rule: str,
    deadline: datetime,
    fired_at: datetime,
    sla: timedelta | None,
    business: bool = False,
    locale: str = "en",
    zone: str = "UTC",
    team_zone: str = "UTC",
    ack_url: str | None = None,
    press: str | None = None,
    instead_of: str | None = None,
    new_owner: str | None = None,
    task: str | None = None,
) -> dict:
    """The alert as a message: title, detail lines, facts, links and the button labels."""
    words = texts(locale)
    name = variant(kind, level, bool(new_owner))
    template = words["alert"][name]
    late = fired_at - deadline
    fields = {
        "lead": lead_label(lead),
        "owner": lead.get("owner") or words["nobody"],
        "new_owner": new_owner or "",
        "stage": lead.get("stage") or "",
        "task": task or "",
        "level": level,
        "due": local_time(deadline, locale, zone, team_zone, today=fired_at),
        "sla": sla_length(sla, locale, business) if sla is not None else "—",
        "late": spoken_duration(max(late, timedelta(0)), locale),
        "left": spoken_duration(max(-late, timedelta(0)), locale),
    }
    detail = template["detail_late"] if "detail_late" in template and late >= LATE_AFTER else template["detail"]
    lines = [detail.format(**fields)]
    if instead_of:
        lines.append(words["instead_of"].format(person=instead_of))
    facts = [[words["facts"]["owner"], fields["owner"]]]
    if lead.get("source"):
        facts.append([words["facts"]["source"], str(lead["source"])])
    if lead.get("stage") and kind.startswith("stage."):
        facts.append([words["facts"]["stage"], str(lead["stage"])])
    facts.append([words["facts"]["rule"], rule])
    return {
        "title": template["title"].format(**fields),
        "lines": lines,
        "facts": facts,
        "lead_url": http_url(lead.get("url")),
        "ack_url": ack_url,
        "press": press,
        "labels": dict(words["label"]),
        "ack_line": words["ack"],
    }


def text_message(text: str, subject: str | None = None, lead_url: str | None = None) -> dict:
    """A message made of a plain text (digests, ops alerts, payloads stored before messages had parts)."""
    first, _, rest = text.partition("\n")
    title = subject or first
    lines = rest.splitlines() if not subject or subject == first else text.splitlines()
    return {"title": title, "lines": [line for line in lines if line], "facts": [], "lead_url": http_url(lead_url)}


def message_of(payload: dict) -> dict:
    """The payload's message; payloads without one are read as plain text."""
    message = payload.get("message")
    if isinstance(message, dict) and message.get("title"):
        return message
    return text_message(str(payload.get("text") or ""), payload.get("subject"), payload.get("lead_url"))


def plain_text(message: dict) -> str:
    """The message as plain text: title, details, facts, the lead's link and the acknowledge link."""
    out = [str(message["title"]) + ("" if str(message["title"]).endswith((".", "!", "?")) else ".")]
    out.extend(message.get("lines") or [])
    if message.get("facts"):
        out.append(" · ".join(f"{label}: {value}" for label, value in message["facts"]))
    if message.get("lead_url"):
        out.append(message["lead_url"])
    if message.get("taken"):
        out.append(message["taken"])
    elif message.get("ack_url"):
        out.append(message.get("ack_line", "{url}").format(url=message["ack_url"]))
    return "\n".join(out)


def taken_message(payload: dict, person: str, at: datetime, team_zone: str) -> dict:
    """The alert's message once someone took the lead: the same, plus who took it and when."""
    locale = payload.get("locale") or "en"
    zone = payload.get("timezone") or team_zone
    when = local_time(at, locale, zone, team_zone, today=at)
    return {**message_of(payload), "taken": texts(locale)["taken"].format(person=person, at=when)}


def alert_payload(
    *,
    alert_id: int | None,
    escalation_id: int,
    clock: str,
    due_at: datetime,
    recipient: str | None,
    role: str | None,
    channel: str,
    deadline_at: datetime | None = None,
    **facts,
) -> dict:
    """The alert JSON a webhook channel receives (the contract in the README); ``facts`` are what
    its message says (the arguments of :func:`alert_message`: ``kind``, ``level``, ``lead``,
    ``rule``, ``fired_at``, ``sla``, ``locale``, ``zone``, ``ack_url`` …).

    ``due_at`` is when this step was due, ``deadline_at`` the clock's deadline (the same for a
    breach, later for a warning); ``ack_url`` is the recipient's signed acknowledge link and
    ``press`` the signed value of the chat's "Take it" button (None when acknowledgements are
    off); ``instead_of`` names the person whose quiet hours sent this alert to the on-duty person.
    """
    deadline = deadline_at or due_at
    message = alert_message(deadline=deadline, **facts)
    lead, fired_at, sla = facts["lead"], facts["fired_at"], facts.get("sla")
    return {
        "alert_id": alert_id,
        "escalation_id": escalation_id,
        "kind": facts["kind"],
        "level": facts["level"],
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
        "rule": facts["rule"],
        "due_at": due_at.isoformat().replace("+00:00", "Z"),
        "deadline_at": deadline.isoformat().replace("+00:00", "Z"),
        "fired_at": fired_at.isoformat().replace("+00:00", "Z"),
        "late_by_s": max(0, round((fired_at - due_at).total_seconds())),
        "sla_s": round(sla.total_seconds()) if sla is not None else None,
        "lead_url": message["lead_url"],
        "text": plain_text(message),
        "ack_url": facts.get("ack_url"),
        "instead_of": facts.get("instead_of"),
        "reassigned_to": facts.get("new_owner"),
        "locale": facts.get("locale", "en"),
        "timezone": facts.get("zone", "UTC"),
        "subject": message["title"],
        "labels": message["labels"],
        "message": message,
    }
