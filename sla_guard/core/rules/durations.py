"""Durations as ops write them in the rules file: ``90s``, ``15m``, ``2h``, ``1d``, ``1d4h``."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_SPOKEN = re.compile(r"^\s*(\d+)\s*([a-zA-Zа-яА-Я]+)\s*$")
_UNITS = {
    "s": "s",
    "sec": "s",
    "secs": "s",
    "second": "s",
    "seconds": "s",
    "m": "m",
    "min": "m",
    "mins": "m",
    "minute": "m",
    "minutes": "m",
    "h": "h",
    "hr": "h",
    "hrs": "h",
    "hour": "h",
    "hours": "h",
    "d": "d",
    "day": "d",
    "days": "d",
}


class Span(timedelta):
    """A rules-file duration that remembers how many whole days it was written with.

    With a business calendar a day means a *working day* (``2d`` in stage "qualification" is two
    working days), so the days are kept apart from the hours: ``1d4h`` and ``28h`` are the same
    wall-clock time but not the same business time.
    """

    working_days: int

    def __new__(cls, *args, working_days: int = 0, **kwargs):
        span = super().__new__(cls, *args, **kwargs)
        span.working_days = working_days
        return span

    def __reduce__(self):
        return (_span, (self.days, self.seconds, self.microseconds, self.working_days))


def _span(days: int, seconds: int, microseconds: int, working_days: int) -> Span:
    return Span(days, seconds, microseconds, working_days=working_days)


def business_amount(amount: timedelta, working_day: timedelta) -> timedelta:
    """``amount`` in business time, counting each of its written days as ``working_day``."""
    days = getattr(amount, "working_days", 0)
    if not days:
        return timedelta(seconds=amount.total_seconds())
    return timedelta(seconds=amount.total_seconds()) - timedelta(days=days) + days * working_day


def parse_duration(text: object) -> Span:
    """Parse a rules-file duration; raise ``ValueError`` with a message ops can act on."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"{text!r} is not a duration; use forms like 90s, 15m, 2h, 1d, 1d4h")
    if isinstance(text, int):
        raise ValueError(f"{text} has no unit; write {text}m, {text}h or {text}d")
    match = _DURATION.match(text.strip())
    if text.strip() and match:
        parts = {unit: int(value or 0) for unit, value in match.groupdict().items()}
        return Span(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"], working_days=parts["d"])
    spoken = _SPOKEN.match(text)
    if spoken and spoken.group(2).lower() in _UNITS:
        hint = f"{spoken.group(1)}{_UNITS[spoken.group(2).lower()]}"
        raise ValueError(f'"{text}" is not a duration; use {hint}')
    raise ValueError(f'"{text}" is not a duration; use forms like 90s, 15m, 2h, 1d, 1d4h')


def format_duration(value: timedelta) -> str:
    """The shortest rules-file spelling of ``value`` (whole seconds)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return sign + out
