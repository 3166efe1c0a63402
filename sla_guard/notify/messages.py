"""Alert payloads and texts, in English and Russian. Pure."""

from __future__ import annotations

from datetime import datetime

from ..rules.durations import format_duration

_TEXTS = {
    "en": {
        "first_touch.warning": "Lead {lead} ({source}) still has no first touch: due {due} ({owner}).",
        "first_touch.breach": "Lead {lead} ({source}) missed its first-touch SLA by {late}: owner {owner}, rule \"{rule}\".",
        "stage.warning": "Lead {lead} is close to its time limit in stage {stage} ({owner}).",
        "stage.breach": "Lead {lead} is over its time in stage {stage} by {late}: owner {owner}, rule \"{rule}\".",
        "level": "escalation level {level}",
        "nobody": "nobody",
    },
    "ru": {
        "first_touch.warning": "По лиду {lead} ({source}) ещё нет первого касания: срок {due} ({owner}).",
        "first_touch.breach": "Лид {lead} ({source}) просрочил первое касание на {late}: ответственный {owner}, правило «{rule}».",
        "stage.warning": "Лид {lead} скоро превысит время на этапе {stage} ({owner}).",
        "stage.breach": "Лид {lead} превысил время на этапе {stage} на {late}: ответственный {owner}, правило «{rule}».",
        "level": "уровень эскалации {level}",
        "nobody": "не назначен",
    },
}


def alert_text(kind: str, level: int, lead: dict, rule: str, due_at: datetime, late_by_s: int, locale: str = "en") -> str:
    texts = _TEXTS.get(locale, _TEXTS["en"])
    template = texts.get(kind, texts["first_touch.breach"])
    lead_label = lead.get("name") or lead.get("lead_id")
    if lead.get("name"):
        lead_label = f"{lead['name']} #{lead['lead_id']}"
    text = template.format(
        lead=lead_label,
        source=lead.get("source") or "—",
        owner=lead.get("owner") or texts["nobody"],
        rule=rule,
        stage=lead.get("stage") or "—",
        due=due_at.strftime("%Y-%m-%d %H:%M UTC"),
        late=format_duration_seconds(late_by_s),
    )
    if level > 1:
        text += f" ({texts['level'].format(level=level)})"
    if lead.get("url"):
        text += f" {lead['url']}"
    return text


def format_duration_seconds(seconds: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=max(0, int(seconds))))


def alert_payload(*, alert_id: int | None, escalation_id: int, kind: str, level: int, lead: dict, rule: str,
                  clock: str, due_at: datetime, fired_at: datetime, recipient: str | None, role: str | None,
                  channel: str, locale: str = "en") -> dict:
    """The alert JSON a webhook channel receives (the contract in the README)."""
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
        "text": alert_text(kind, level, lead, rule, due_at, late_by_s, locale),
    }
