"""Reading one entry of the rules file's ``calendars:`` into a :class:`CalendarSpec`.

A calendar is written either as ``24/7`` or as a mapping::

    office:
      timezone: Europe/Moscow            # optional; the file's top-level timezone otherwise
      hours:                             # mon..sun, ranges (mon-fri), lists (sat,sun), daily, or 24/7
        mon-fri: ["09:00-13:00", "14:00-18:00"]
        sat: ["10:00-14:00"]
      holidays:                          # optional
        country: RU                      # public holidays and official transfers of the holidays package
        subdivision: MOW                 # optional, with country
        extra: ["2026-12-31", {date: "2026-12-30", hours: ["09:00-15:00"]}]
        workdays: ["2026-11-28", {date: "2026-12-05", as: fri}]

Every problem is reported with its path in the file, all of them at once, as a
:class:`~sla_guard.exceptions.RulesError`. The result is plain data in local wall-clock terms;
:mod:`sla_guard.core.rules.calendar` turns it into business-time arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_data

from sla_guard.exceptions import RulesError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALWAYS_OPEN = "24/7"
MINUTES_PER_DAY = 24 * 60

Window = tuple[int, int]
"""One working window of a day: minutes after local midnight when it opens and closes (closes may be 1440)."""
DayHours = tuple[Window, ...]
"""The working windows of one day, in order; empty for a day off."""

WHOLE_DAY: DayHours = ((0, MINUTES_PER_DAY),)

_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CALENDAR_KEYS = ("timezone", "hours", "holidays")
_HOLIDAY_KEYS = ("country", "subdivision", "extra", "workdays")
_DAY_FORMS = "use mon..sun, a range like mon-fri, a list like sat,sun, or daily"


@dataclass(frozen=True, eq=False)
class CalendarSpec:
    """A validated calendar: its zone, weekly hours and dates with hours of their own.

    ``week`` holds the hours of mon..sun; ``None`` means open around the clock with no
    exceptions (24/7). ``days`` maps dates to their own hours (``()`` for a day off); they win
    over the country's holidays and transfers, which win over the weekly hours.
    """

    name: str
    timezone: ZoneInfo
    week: tuple[DayHours, ...] | None
    days: dict[date, DayHours] = field(default_factory=dict)
    country: str | None = None
    subdivision: str | None = None
    path: str = ""


def read_calendar(name: str, spec: Any, default_timezone: str, path: str) -> CalendarSpec:
    """Validate what YAML gives for calendar ``name``; raise :class:`RulesError` listing every problem."""
    errors: list[tuple[str, str]] = []
    if isinstance(spec, str) and spec.strip() == ALWAYS_OPEN:
        zone = _zone(default_timezone, "timezone", errors)
        _raise_if(errors)
        return CalendarSpec(name, zone, None, path=path)
    if not isinstance(spec, dict):
        raise RulesError([(path, f"{spec!r} is not a calendar; write 24/7 or a mapping with hours")])
    for key in spec:
        if key not in _CALENDAR_KEYS:
            errors.append((f"{path}.{key}", f"unknown key; a calendar takes {', '.join(_CALENDAR_KEYS)}"))
    if "timezone" in spec:
        zone = _zone(spec["timezone"], f"{path}.timezone", errors)
    else:
        zone = _zone(default_timezone, "timezone", errors)
    week = _week(spec.get("hours"), f"{path}.hours", errors)
    days, country, subdivision = _holidays(spec.get("holidays"), week, f"{path}.holidays", errors)
    _raise_if(errors)
    if week == (WHOLE_DAY,) * 7 and not days and not country:
        week = None
    return CalendarSpec(name, zone, week, days, country, subdivision, path)


def _raise_if(errors: list) -> None:
    if errors:
        raise RulesError(errors)


def _zone(value: Any, path: str, errors: list) -> ZoneInfo:
    try:
        if isinstance(value, str) and value:
            return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    errors.append((path, f'"{value}" is not an IANA time zone (e.g. Europe/Moscow)'))
    return ZoneInfo("UTC")


def _week(raw: Any, path: str, errors: list) -> tuple[DayHours, ...]:
    """Weekly hours: each weekday named by exactly one key."""
    if isinstance(raw, str) and raw.strip() == ALWAYS_OPEN:
        return (WHOLE_DAY,) * 7
    if not isinstance(raw, dict):
        hint = 'needs hours, e.g. {mon-fri: ["09:00-18:00"]}, or 24/7'
        errors.append((path, hint if raw is None else f"{raw!r} is not a set of hours; {hint}"))
        return ((),) * 7
    week: list[DayHours] = [()] * 7
    given_by: dict[int, str] = {}
    errors_before = len(errors)
    for key, value in raw.items():
        where = f"{path}.{key}"
        try:
            indexes = _weekday_indexes(str(key))
        except ValueError as exc:
            errors.append((where, str(exc)))
            continue
        hours = _day_hours(value, where, errors)
        clashes = [index for index in indexes if index in given_by]
        if clashes:
            errors.append((where, f'"{WEEKDAYS[clashes[0]]}" is already given by "{given_by[clashes[0]]}"'))
            continue
        for index in indexes:
            given_by[index] = str(key)
            week[index] = hours
    if len(errors) == errors_before and not any(week):
        errors.append((path, "has no working time; give at least one window, or use 24/7"))
    return tuple(week)


def _weekday_indexes(key: str) -> list[int]:
    """``mon``, ``mon-fri``, ``sat,sun``, ``daily`` → weekday numbers (mon = 0)."""
    text = key.strip().lower()
    if text == "daily":
        return list(range(7))
    indexes: list[int] = []
    for part in (piece.strip() for piece in text.split(",")):
        first, _, last = (side.strip() for side in part.partition("-"))
        last = last or first
        if first not in WEEKDAYS or last not in WEEKDAYS:
            raise ValueError(f'"{key}" is not a day; {_DAY_FORMS}')
        if WEEKDAYS.index(last) < WEEKDAYS.index(first):
            raise ValueError(f'"{part}" runs backwards; list the days, e.g. {first},{last}')
        for index in range(WEEKDAYS.index(first), WEEKDAYS.index(last) + 1):
            if index in indexes:
                raise ValueError(f'"{key}" names {WEEKDAYS[index]} twice')
            indexes.append(index)
    return indexes


def _day_hours(value: Any, path: str, errors: list) -> DayHours:
    """A list of ``HH:MM-HH:MM`` windows that must not overlap (one string is a list of one)."""
    if isinstance(value, str):
        items, paths = [value], [path]
    elif isinstance(value, list):
        items, paths = value, [f"{path}[{index}]" for index in range(len(value))]
    else:
        errors.append((path, 'needs a list of windows like ["09:00-18:00"], or [] for a day off'))
        return ()
    parsed: list[tuple[Window, str, str]] = []
    for item, where in zip(items, paths, strict=True):
        window = _window(item, where, errors)
        if window:
            parsed.append((window, str(item).strip(), where))
    parsed.sort()
    for position, (later, later_text, where) in enumerate(parsed[1:], start=1):
        earlier, earlier_text, _ = max(parsed[:position], key=lambda entry: entry[0][1])
        if later[0] < earlier[1]:
            errors.append((where, f'"{later_text}" overlaps "{earlier_text}"'))
    return tuple(window for window, _, _ in parsed)


def _window(item: Any, path: str, errors: list) -> Window | None:
    text = str(item).strip()
    match = _WINDOW.match(text.replace(" ", "")) if isinstance(item, str) else None
    if match:
        start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
        opens, closes = start_h * 60 + start_m, end_h * 60 + end_m
        if start_h < 24 and start_m < 60 and end_m < 60 and closes <= MINUTES_PER_DAY:
            if opens < closes:
                return opens, closes
            if opens == closes:
                errors.append((path, f'"{text}" is empty'))
            elif closes <= 12 * 60 <= opens:
                start, end = (part.strip() for part in text.split("-"))
                errors.append(
                    (
                        path,
                        f'"{text}" ends before it starts; split a night shift at midnight '
                        f"({start}-24:00, then 00:00-{end} the next day)",
                    )
                )
            else:
                errors.append((path, f'"{text}" ends before it starts'))
            return None
    errors.append((path, f'"{text}" is not a time window; write HH:MM-HH:MM, e.g. 09:00-18:00'))
    return None


def _holidays(raw: Any, week: tuple[DayHours, ...], path: str, errors: list):
    """Days off and extra working days: ``(days, country, subdivision)``."""
    if raw is None:
        return {}, None, None
    if not isinstance(raw, dict):
        errors.append((path, f"{raw!r} is not a mapping; use keys {', '.join(_HOLIDAY_KEYS)}"))
        return {}, None, None
    for key in raw:
        if key not in _HOLIDAY_KEYS:
            errors.append((f"{path}.{key}", f"unknown key; holidays take {', '.join(_HOLIDAY_KEYS)}"))
    country, subdivision = _country(raw, path, errors)
    days: dict[date, DayHours] = {}
    for index, item in enumerate(_list(raw.get("extra"), f"{path}.extra", errors)):
        where = f"{path}.extra[{index}]"
        fields = _date_item(item, ("date", "hours"), where, errors)
        if fields is None:
            continue
        hours = _day_hours(fields["hours"], f"{where}.hours", errors) if "hours" in fields else ()
        _put(days, fields["date"], hours, where, errors)
    for index, item in enumerate(_list(raw.get("workdays"), f"{path}.workdays", errors)):
        where = f"{path}.workdays[{index}]"
        fields = _date_item(item, ("date", "as"), where, errors)
        if fields is None:
            continue
        like = str(fields.get("as", "mon")).strip().lower()
        if like not in WEEKDAYS:
            errors.append((f"{where}.as", f'"{fields["as"]}" is not a weekday; use one of {", ".join(WEEKDAYS)}'))
        elif not week[WEEKDAYS.index(like)]:
            errors.append((where, f"{like} has no hours to work by; say which weekday's hours to use with `as`"))
        else:
            _put(days, fields["date"], week[WEEKDAYS.index(like)], where, errors)
    return days, country, subdivision


def _country(raw: dict, path: str, errors: list) -> tuple[str | None, str | None]:
    country, subdivision = raw.get("country"), raw.get("subdivision")
    if country is None:
        if subdivision is not None:
            errors.append((f"{path}.subdivision", "needs holidays.country"))
        return None, None
    if country is False:  # YAML reads a bare NO (Norway) as false
        errors.append((f"{path}.country", 'write "NO" in quotes: YAML reads a bare NO as false'))
        return None, None
    code = str(country).strip().upper()
    if code not in holiday_data.list_supported_countries():
        errors.append(
            (
                f"{path}.country",
                f'"{country}" is not a country the holidays package knows; use an ISO code such as RU, US or DE',
            )
        )
        return None, None
    if subdivision is None:
        return code, None
    try:
        holiday_data.country_holidays(code, subdiv=str(subdivision), years=2000)
    except NotImplementedError:
        known = holiday_data.list_supported_countries()[code]
        message = (
            f'"{subdivision}" is not a subdivision of {code}; use one of {", ".join(known)}'
            if known
            else f"{code} has no subdivisions; leave it out"
        )
        errors.append((f"{path}.subdivision", message))
        return None, None
    return code, str(subdivision)


def _list(raw: Any, path: str, errors: list) -> list:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append((path, "must be a list of dates"))
        return []
    return raw


def _date_item(item: Any, keys: tuple[str, ...], path: str, errors: list) -> dict | None:
    """A bare date or a mapping with ``date`` and the other ``keys``; the date parsed."""
    fields = dict(item) if isinstance(item, dict) else {"date": item}
    for key in fields:
        if key not in keys:
            errors.append((f"{path}.{key}", f"unknown key; use {', '.join(keys)}"))
    if "date" not in fields:
        errors.append((path, "needs a date"))
        return None
    value, where = fields["date"], f"{path}.date" if isinstance(item, dict) else path
    if isinstance(value, date) and not isinstance(value, datetime):
        return fields
    if isinstance(value, str) and _DATE.match(value.strip()):
        try:
            fields["date"] = date.fromisoformat(value.strip())
            return fields
        except ValueError:
            pass
    errors.append((where, f'"{value}" is not a date; write YYYY-MM-DD'))
    return None


def _put(days: dict, day: date, hours: DayHours, path: str, errors: list) -> None:
    if day in days:
        errors.append((path, f"{day.isoformat()} is listed twice"))
    else:
        days[day] = hours
