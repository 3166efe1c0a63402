"""Durations and times as people say them, in English and Russian. Pure.

Alerts never show raw seconds: ``5 min``, ``1 h 20 min``, ``2 working days`` (``5 мин``,
``1 ч 20 мин``, ``2 рабочих дня``). Times are shown in the reader's time zone; the zone is
named only when it differs from the team's, so a Moscow team reads ``14:15`` and a colleague
in Yekaterinburg reads ``16:15 (Asia/Yekaterinburg)``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

UNITS = {
    "en": {"sec": "sec", "min": "min", "h": "h", "day": ("day", "days"), "wday": ("working day", "working days")},
    "ru": {
        "sec": "сек",
        "min": "мин",
        "h": "ч",
        "day": ("день", "дня", "дней"),
        "wday": ("рабочий день", "рабочих дня", "рабочих дней"),
    },
}
"""Unit words per language; day words carry their plural forms."""

MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "ru": ("янв", "фев", "мар", "апр", "мая", "июн", "июл", "авг", "сен", "окт", "ноя", "дек"),
}


def plural(count: int, forms: tuple[str, ...]) -> str:
    """The form of a counted word: English (one, many); Russian (one, few, many)."""
    if len(forms) == 2:
        return forms[0] if count == 1 else forms[1]
    tens, ones = count % 100, count % 10
    if ones == 1 and tens != 11:
        return forms[0]
    if 2 <= ones <= 4 and not 12 <= tens <= 14:
        return forms[1]
    return forms[2]


def spoken_duration(amount: timedelta | float | int, locale: str = "en", working_days: bool = False) -> str:
    """``amount`` as a person says it: seconds only under a minute, minutes rounded, days named.

    ``working_days`` counts whole days as working days (a rule with a business calendar).
    """
    words = UNITS.get(locale, UNITS["en"])
    seconds = amount.total_seconds() if isinstance(amount, timedelta) else float(amount)
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} {words['sec']}"
    if seconds < 600 and seconds % 60:
        return f"{seconds // 60} {words['min']} {seconds % 60} {words['sec']}"
    minutes = round(seconds / 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} {plural(days, words['wday' if working_days else 'day'])}")
    if hours:
        parts.append(f"{hours} {words['h']}")
    if minutes and not days:
        parts.append(f"{minutes} {words['min']}")
    return " ".join(parts)


def sla_length(amount: timedelta, locale: str, business_calendar: bool, working_day: timedelta | None = None) -> str:
    """How long an SLA is as the rules file means it: ``2d`` under office hours is two working days."""
    days = getattr(amount, "working_days", 0)
    if business_calendar and days:
        rest = amount - timedelta(days=days)
        text = f"{days} {plural(days, UNITS.get(locale, UNITS['en'])['wday'])}"
        return text + (f" {spoken_duration(rest, locale)}" if rest > timedelta(0) else "")
    return spoken_duration(amount, locale)


def local_time(at: datetime, locale: str, zone: str, team_zone: str, today: datetime | None = None) -> str:
    """``14:15`` on the reader's ``today``, ``23 Nov 14:15`` on another day; the zone named when not the team's."""
    local = at.astimezone(ZoneInfo(zone))
    text = local.strftime("%H:%M")
    if today is None or today.astimezone(ZoneInfo(zone)).date() != local.date():
        month = MONTHS.get(locale, MONTHS["en"])[local.month - 1]
        text = f"{local.day} {month} {text}"
    if zone != team_zone:
        text += f" ({zone})"
    return text
