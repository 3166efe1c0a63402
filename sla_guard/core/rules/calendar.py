"""Business time: when an SLA deadline falls and how much working time has passed.

A :class:`BusinessCalendar` knows when a sales team works: working windows per weekday in the
team's IANA time zone (lunch breaks and split shifts are several windows a day), the country's
public holidays and official transfers of working days (from the ``holidays`` package), and the
team's own days off, shortened days and extra working days. Deadlines are computed with it:
``add(lead_arrived, 15 min)`` is the moment 15 working minutes have passed, so a lead that
arrives at night is due 15 minutes after the next opening.

Rules the arithmetic follows, exact to the microsecond:

* Working time is a set of windows ``[opens, closes)``: the team is at work at ``opens`` and no
  longer at ``closes``. Touching windows (``09:00-13:00`` and ``13:00-18:00``, or a day ending at
  ``24:00`` followed by one starting at ``00:00``) are one stretch of work.
* A window's times are local wall-clock times on its date. It runs from the first moment local
  clocks show its opening time to the last moment they show its closing time. So
  ``09:00-18:00`` is 9 real hours on every day, including clock-change days; in spring an hour
  the clocks skip is simply not worked (``01:00-04:00`` on that day is 2 real hours, a window
  inside the skipped hour vanishes); in autumn an hour the clocks repeat is worked twice when it
  lies inside a window (``01:00-04:00`` is 4 real hours). This matches zoneinfo's ``fold``:
  an opening time that occurs twice uses ``fold=0`` (the first time), a closing time that
  occurs twice uses ``fold=1`` (the last time), and a time that does not occur stands for the
  instant of the clock change.
* Which hours a date has, most specific first: the calendar's own ``extra`` days off and
  shortened days and its ``workdays``; then the country's public holidays (no work) and the
  country's transferred working days on weekends, which get the hours of a normal weekday (the
  first weekday that has hours, Monday for most teams); then the weekly hours.
* ``add`` returns the end of a window when the amount runs out exactly there, not the next
  opening; ``add(start, 0)`` is ``start`` even outside working hours.
* Searches are bounded: a calendar without working hours in a week is rejected when the rules
  are read, and looking for the next opening gives up with :class:`RulesError` after
  ``MAX_IDLE_DAYS`` days without work (say, every working day listed as a holiday).

``add`` and ``between`` cost one step per window crossed; each date's windows are computed once
and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays as holiday_data

from sla_guard.core.rules.calendar_spec import ALWAYS_OPEN, CalendarSpec, DayHours, read_calendar
from sla_guard.exceptions import RulesError

__all__ = ["ALWAYS", "MAX_IDLE_DAYS", "BusinessCalendar", "parse_calendar"]

MAX_IDLE_DAYS = 3 * 366
"""How many days in a row without working time end the search for the next opening."""

ONE_DAY = timedelta(days=1)
NO_TIME = timedelta(0)

Stretch = tuple[datetime, datetime]
"""A stretch of working time: the UTC instants it starts and ends, ``[start, end)``."""


class BusinessCalendar:
    """The working time of a team: adds business time to instants and measures it between them.

    Build one with :func:`parse_calendar` from the rules file; :data:`ALWAYS` is open 24/7.
    All methods take timezone-aware datetimes (any zone) and return UTC datetimes.

    Attributes:
        name: the calendar's name in the rules file.
        timezone: the zone its hours are written in.
        always_open: True when every instant is working time (24/7 without exceptions).
    """

    def __init__(self, spec: CalendarSpec):
        self.name = spec.name
        self.timezone = spec.timezone
        self.always_open = spec.week is None
        self._spec = spec
        self._transfer_hours = next((hours for hours in spec.week if hours), ()) if spec.week else ()
        self._stretches_of = functools.lru_cache(maxsize=4096)(self._compute_stretches)
        self._country_year = functools.lru_cache(maxsize=64)(self._load_country_year)

    def __reduce__(self):
        return BusinessCalendar, (self._spec,)

    def __repr__(self) -> str:
        return f"<BusinessCalendar {self.name!r} {self.timezone.key}{' 24/7' if self.always_open else ''}>"

    @functools.cached_property
    def working_day(self) -> timedelta:
        """A typical working day: the week's working time over its working days (24 h for 24/7).

        A rule's ``2d`` on this calendar means two of these.
        """
        if self.always_open:
            return timedelta(hours=24)
        totals = [sum(end - start for start, end in hours) for hours in self._spec.week if hours]
        return timedelta(minutes=sum(totals) / len(totals))

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The instant (UTC) when ``amount`` of working time has passed since ``start``.

        ``start`` may be outside working hours (work counts from the next opening). An amount
        that runs out exactly at the end of a window returns that end; a zero amount returns
        ``start``. Raises ``ValueError`` for a naive ``start`` or a negative amount.
        """
        start = _utc(start)
        if amount < NO_TIME:
            raise ValueError(f"cannot add a negative amount of business time ({amount})")
        if amount == NO_TIME or self.always_open:
            return start + amount
        left = amount
        for opens, closes in self._stretches_from(start):
            if left <= closes - opens:
                return opens + left
            left -= closes - opens
        raise AssertionError("the search for working time ends only with an error")  # pragma: no cover

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Working time in ``[start, end)``; the negative of ``between(end, start)`` when ``end < start``."""
        start, end = _utc(start), _utc(end)
        if end < start:
            return -self.between(end, start)
        if self.always_open:
            return end - start
        total = NO_TIME
        for opens, closes in self._stretches_from(start, until=end):
            if opens >= end:
                break
            total += min(closes, end) - opens
        return total

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` is working time (a window's end is not, its start is)."""
        at = _utc(at)
        if self.always_open:
            return True
        day = at.astimezone(self.timezone).date()
        return any(
            opens <= at < closes
            for near in (day - ONE_DAY, day, day + ONE_DAY)
            for opens, closes in self._stretches_of(near)
        )

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself (in UTC) when it is working time, else the next instant work starts."""
        at = _utc(at)
        if self.always_open:
            return at
        for opens, _ in self._stretches_from(at):
            return opens
        raise AssertionError("the search for working time ends only with an error")  # pragma: no cover

    def working_windows(self, day: date) -> tuple[Stretch, ...]:
        """The working time of local date ``day`` as UTC ``(start, end)`` pairs, in order, merged where they touch."""
        if self.always_open:
            midnight = datetime.combine(day, time(), self.timezone).astimezone(UTC)
            return ((midnight, datetime.combine(day + ONE_DAY, time(), self.timezone).astimezone(UTC)),)
        return self._stretches_of(day)

    def _stretches_from(self, start: datetime, until: datetime | None = None) -> Iterator[Stretch]:
        """Working stretches after ``start`` in order, the first one cut to begin no earlier than ``start``.

        Without ``until`` the sequence is endless for a calendar with working time and raises
        :class:`RulesError` after :data:`MAX_IDLE_DAYS` days in a row without work.
        """
        day = start.astimezone(self.timezone).date() - ONE_DAY
        last_day = until.astimezone(self.timezone).date() + ONE_DAY if until is not None else None
        cursor, idle_days = start, 0
        while last_day is None or day <= last_day:
            worked = False
            for opens, closes in self._stretches_of(day):
                if closes > cursor:
                    yield max(opens, cursor), closes
                    cursor, worked = closes, True
            idle_days = 0 if worked else idle_days + 1
            if idle_days > MAX_IDLE_DAYS and until is None:
                raise RulesError(
                    [
                        (
                            self._spec.path or f"calendars.{self.name}",
                            f"has no working time for {MAX_IDLE_DAYS} days after {start.date().isoformat()}; "
                            "check its hours and holidays",
                        )
                    ]
                )
            day += ONE_DAY

    def _hours_of(self, day: date) -> DayHours:
        """The local working windows of ``day``: own days first, then the country, then the week."""
        spec = self._spec
        if day in spec.days:
            return spec.days[day]
        if spec.country:
            days_off, transferred_workdays = self._country_year(day.year)
            if day in days_off:
                return ()
            if day in transferred_workdays:
                return self._transfer_hours
        return spec.week[day.weekday()]

    def _compute_stretches(self, day: date) -> tuple[Stretch, ...]:
        midnight = datetime.combine(day, time())
        stretches: list[list[datetime]] = []
        for opens, closes in self._hours_of(day):
            start = _instant(midnight + timedelta(minutes=opens), self.timezone, last=False)
            end = _instant(midnight + timedelta(minutes=closes), self.timezone, last=True)
            if start < end:
                stretches.append([start, end])
        stretches.sort()
        merged: list[list[datetime]] = []
        for stretch in stretches:
            if merged and stretch[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], stretch[1])
            else:
                merged.append(stretch)
        return tuple((start, end) for start, end in merged)

    def _load_country_year(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        """The country's days off and transferred weekend working days in ``year``.

        Neighbouring years are loaded too: a transfer may move a day across New Year.
        """
        table = holiday_data.country_holidays(
            self._spec.country,
            subdiv=self._spec.subdivision,
            years=list(range(max(year - 1, 1), min(year + 1, 9999) + 1)),
        )
        days_off = frozenset(day for day in table if day.year == year)
        transferred = frozenset(day for day in getattr(table, "weekend_workdays", ()) if day.year == year)
        return days_off, transferred


def _utc(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone; business time needs aware datetimes")
    return value.astimezone(UTC)


def _instant(wall: datetime, zone: ZoneInfo, *, last: bool) -> datetime:
    """The UTC instant local clocks in ``zone`` show ``wall``: the first (or ``last``) such instant,
    or the moment of the clock change when the clocks skip over ``wall``."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first <= second:
        return second if last else first
    return _clock_change(second, first, zone)


def _clock_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant in ``(before, after]`` when ``zone`` changes its UTC offset (to the second)."""
    low, high = int(before.timestamp()), int(after.timestamp())
    old_offset = before.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == old_offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def parse_calendar(name: str, spec, default_timezone: str, path: str = "") -> BusinessCalendar:
    """Build calendar ``name`` from its rules-file ``spec`` (``"24/7"`` or a mapping).

    ``default_timezone`` applies when the calendar names none. Raises :class:`RulesError` with
    every problem and its path, e.g. ``calendars.office.hours.mon-fri[1]``; ``path`` defaults to
    ``calendars.<name>``.
    """
    return BusinessCalendar(read_calendar(name, spec, default_timezone, path or f"calendars.{name}"))


ALWAYS = BusinessCalendar(CalendarSpec(ALWAYS_OPEN, ZoneInfo("UTC"), None, path="calendars"))
"""Open around the clock in UTC: business time is plain time."""
