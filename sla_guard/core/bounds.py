"""Input bounds: what sla-guard accepts from any sender, checked at the edge. Pure: no I/O.

Every endpoint and every CRM adapter uses these checks, so one rule holds everywhere:

- a moment (``occurred_at``, a CRM's own timestamps) lies between :data:`EARLIEST` and
  :data:`FUTURE_SLACK` after the server's now;
- text is NUL-free, valid Unicode (no lone surrogates) and bounded: ids :data:`ID_MAX`
  characters, names and other text :data:`TEXT_MAX`;
- JSON nesting deeper than :data:`DEPTH_MAX` is refused before the body is decoded;
- a lead's link (``lead.url``) is an ``http`` or ``https`` URL.

A value outside the bounds raises :class:`InvalidEvent` naming the field; the endpoint answers
400 and stores nothing. Messages quote at most a short, redacted excerpt of the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sla_guard.exceptions import InvalidEvent

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No event of a lead happened before this."""

FUTURE_SLACK = timedelta(days=1)
"""How far after the server's now an event may be dated (senders' clocks drift)."""

ID_MAX = 200
"""Longest id (event, lead, record, task) in characters."""

TEXT_MAX = 1000
"""Longest name or other free text in characters."""

DEPTH_MAX = 64
"""Deepest JSON nesting (objects and arrays) accepted."""

EXCERPT_MAX = 40
"""Longest excerpt of a rejected value quoted back in an error message."""

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[^\[\]{}]+")


def excerpt(value: object) -> str:
    """A short, printable excerpt of a rejected value, safe to echo or log."""
    text = str(value)
    short = text[:EXCERPT_MAX].encode("unicode_escape", "backslashreplace").decode("ascii")
    return f"{short}…" if len(text) > EXCERPT_MAX else short


def clean_text(value: str, limit: int = TEXT_MAX) -> str:
    """``value`` cut to ``limit`` characters with NULs and lone surrogates replaced: safe to store."""
    return _BAD_CHARS.sub("\ufffd", value[:limit])


def text_problem(value: str, limit: int) -> str | None:
    """Why ``value`` is not acceptable text of at most ``limit`` characters, or None."""
    if len(value) > limit:
        return f"is longer than {limit} characters"
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        return "contains a NUL character" if bad.group() == "\x00" else "contains an invalid character (lone surrogate)"
    return None


def check_text(value: str | None, where: str, limit: int = TEXT_MAX) -> None:
    """Raise :class:`InvalidEvent` naming ``where`` unless ``value`` is bounded, NUL-free text."""
    if value is not None:
        problem = text_problem(value, limit)
        if problem:
            raise InvalidEvent(where, problem)


def plain_text(value: str) -> str:
    """Validator for models: NUL-free, valid Unicode (the length is bounded by the field)."""
    problem = text_problem(value, len(value))
    if problem:
        raise ValueError(problem)
    return value


def web_url(value: str) -> str:
    """Validator for models: an absolute ``http``/``https`` URL (a lead's link in the CRM)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http or https URL")
    return value


def moment_problem(moment: datetime, now: datetime | None = None) -> str | None:
    """Why ``moment`` (aware) is out of bounds, or None; without ``now`` only the past bound holds."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return "is out of range for a date"
    if utc < EARLIEST:
        return f"must not be before {EARLIEST.date().isoformat()}"
    if now is not None and utc > now + FUTURE_SLACK:
        return "must not be more than one day in the future"
    return None


def check_moment(moment: datetime, where: str, now: datetime | None = None) -> datetime:
    """``moment`` in UTC; raise :class:`InvalidEvent` naming ``where`` when it is out of bounds."""
    problem = moment_problem(moment, now)
    if problem:
        raise InvalidEvent(where, problem)
    return moment.astimezone(UTC)


def check_depth(body: bytes | str, where: str = "body", limit: int = DEPTH_MAX) -> None:
    """Refuse JSON nested deeper than ``limit`` without decoding it (decoders recurse)."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if data.count(b"[") + data.count(b"{") <= limit:
        return
    depth = 0
    for char in _BRACKETS.sub(b"", _STRINGS.sub(b"", data)):
        if char in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                raise InvalidEvent(where, f"JSON is nested deeper than {limit} levels")
        else:
            depth -= 1


def check_events(events: Iterable, now: datetime, where: str = "events") -> None:
    """Bounds that need the server's now, for canonical events from any adapter."""
    for index, event in enumerate(events):
        problem = moment_problem(event.occurred_at, now)
        if problem:
            raise InvalidEvent(f"{where}[{index}].occurred_at", f"{problem} (event {excerpt(event.event_id)})")
