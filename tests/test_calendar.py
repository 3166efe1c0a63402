"""Business-time arithmetic: deadlines in working time across lunch, nights, holidays and clock changes."""

from __future__ import annotations

import pickle
import textwrap
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sla_guard.core.rules.calendar import ALWAYS, MAX_IDLE_DAYS, BusinessCalendar, parse_calendar
from sla_guard.exceptions import RulesError

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SANTIAGO = ZoneInfo("America/Santiago")  # clocks change at midnight
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # clocks change by 30 minutes
ZONES = (BERLIN, NEW_YORK, MOSCOW, SANTIAGO, LORD_HOWE)
LUNCH_BREAK = ["09:00-13:00", "14:00-18:00"]
MINUTE, HOUR = timedelta(minutes=1), timedelta(hours=1)
MICROSECOND = timedelta(microseconds=1)


def local(zone: ZoneInfo, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=zone)


def calendar(hours, zone: str = "Europe/Moscow", **holidays) -> BusinessCalendar:
    spec = {"hours": hours, "holidays": holidays} if holidays else {"hours": hours}
    return parse_calendar("office", spec, zone)


def errors_of(spec, default_timezone: str = "Europe/Moscow") -> dict[str, str]:
    with pytest.raises(RulesError) as info:
        parse_calendar("office", spec, default_timezone)
    return dict(info.value.errors)


MOSCOW_OFFICE = calendar({"mon-fri": LUNCH_BREAK}, country="RU")
PLAIN_OFFICE = calendar({"mon-fri": LUNCH_BREAK})


# --- Everyday deadlines ------------------------------------------------------------------------


def test_lunch_break_is_not_working_time():
    due = PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 23, 12, 50), 15 * MINUTE)
    assert due == local(MOSCOW, 2026, 11, 23, 14, 5)
    assert due.tzinfo is UTC
    assert PLAIN_OFFICE.between(local(MOSCOW, 2026, 11, 23, 12), local(MOSCOW, 2026, 11, 23, 15)) == 2 * HOUR
    assert not PLAIN_OFFICE.is_open(local(MOSCOW, 2026, 11, 23, 13, 30))


def test_amount_used_up_at_a_window_end_returns_that_end():
    monday = (2026, 11, 23)
    assert PLAIN_OFFICE.add(local(MOSCOW, *monday, 12), HOUR) == local(MOSCOW, *monday, 13)
    assert PLAIN_OFFICE.add(local(MOSCOW, *monday, 17), HOUR) == local(MOSCOW, *monday, 18)
    assert (
        PLAIN_OFFICE.add(local(MOSCOW, *monday, 17), HOUR + MICROSECOND) == local(MOSCOW, 2026, 11, 24, 9) + MICROSECOND
    )


def test_lead_arriving_at_night_is_due_after_the_next_opening():
    assert PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 24, 23, 30), 15 * MINUTE) == local(MOSCOW, 2026, 11, 25, 9, 15)
    assert PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 25, 6, 0), 15 * MINUTE) == local(MOSCOW, 2026, 11, 25, 9, 15)
    assert PLAIN_OFFICE.between(local(MOSCOW, 2026, 11, 24, 19), local(MOSCOW, 2026, 11, 25, 8)) == timedelta(0)


def test_friday_evening_lead_is_due_on_monday():
    due = PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 27, 17, 55), 15 * MINUTE)
    assert due == local(MOSCOW, 2026, 11, 30, 9, 10)
    saturday_lead = PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 28, 12), 2 * HOUR)
    assert saturday_lead == local(MOSCOW, 2026, 11, 30, 11)


def test_zero_amount_is_the_start_itself_even_at_night():
    night = local(MOSCOW, 2026, 11, 28, 3, 7, 9, 123)
    assert PLAIN_OFFICE.add(night, timedelta(0)) == night
    assert PLAIN_OFFICE.add(night, timedelta(0)).tzinfo is UTC


def test_arithmetic_is_exact_to_the_microsecond():
    start = local(MOSCOW, 2026, 11, 23, 12, 59, 59, 999_999)
    amount = timedelta(hours=5, microseconds=3)
    due = PLAIN_OFFICE.add(start, amount)
    assert due == local(MOSCOW, 2026, 11, 24, 10, 0, 0, 2)
    assert PLAIN_OFFICE.between(start, due) == amount


def test_between_runs_backwards_as_a_negative_amount():
    start, end = local(MOSCOW, 2026, 11, 23, 10), local(MOSCOW, 2026, 11, 24, 10)
    assert PLAIN_OFFICE.between(start, end) == 8 * HOUR
    assert PLAIN_OFFICE.between(end, start) == -8 * HOUR
    assert PLAIN_OFFICE.between(start, start) == timedelta(0)


def test_next_open_and_is_open():
    monday = (2026, 11, 23)
    assert PLAIN_OFFICE.next_open(local(MOSCOW, *monday, 10)) == local(MOSCOW, *monday, 10)
    assert PLAIN_OFFICE.next_open(local(MOSCOW, *monday, 13)) == local(MOSCOW, *monday, 14)
    assert PLAIN_OFFICE.next_open(local(MOSCOW, 2026, 11, 27, 18)) == local(MOSCOW, 2026, 11, 30, 9)
    assert PLAIN_OFFICE.is_open(local(MOSCOW, *monday, 9)) and not PLAIN_OFFICE.is_open(local(MOSCOW, *monday, 18))
    assert PLAIN_OFFICE.next_open(local(MOSCOW, *monday, 10)).tzinfo is UTC


def test_instants_in_any_zone_mean_the_same_moment():
    in_utc = datetime(2026, 11, 23, 9, 50, tzinfo=UTC)  # 12:50 in Moscow
    in_new_york = in_utc.astimezone(NEW_YORK)
    assert (
        PLAIN_OFFICE.add(in_utc, 15 * MINUTE)
        == PLAIN_OFFICE.add(in_new_york, 15 * MINUTE)
        == local(MOSCOW, 2026, 11, 23, 14, 5)
    )


def test_naive_datetimes_and_negative_amounts_are_refused():
    with pytest.raises(ValueError, match="no time zone"):
        PLAIN_OFFICE.add(datetime(2026, 11, 23, 10), HOUR)
    with pytest.raises(ValueError, match="no time zone"):
        PLAIN_OFFICE.between(datetime(2026, 11, 23, 10), local(MOSCOW, 2026, 11, 23, 11))
    with pytest.raises(ValueError, match="no time zone"):
        ALWAYS.is_open(datetime(2026, 11, 23, 10))
    with pytest.raises(ValueError, match="negative"):
        PLAIN_OFFICE.add(local(MOSCOW, 2026, 11, 23, 10), -MINUTE)


# --- Holidays and transferred working days ---------------------------------------------------


def test_russian_new_year_holidays():
    # 2026-12-31 is a day off moved from 2027-01-04; 1-8 January are holidays; 9-10 are a weekend.
    due = MOSCOW_OFFICE.add(local(MOSCOW, 2026, 12, 30, 17), 2 * HOUR)
    assert due == local(MOSCOW, 2027, 1, 11, 10)
    # 2025-12-31 is moved from 2025-01-05 and 2026-01-09 from 2026-01-03.
    assert MOSCOW_OFFICE.add(local(MOSCOW, 2025, 12, 30, 17, 30), HOUR) == local(MOSCOW, 2026, 1, 12, 9, 30)
    assert MOSCOW_OFFICE.between(local(MOSCOW, 2025, 12, 31), local(MOSCOW, 2026, 1, 12)) == timedelta(0)


def test_russian_transferred_working_saturday():
    # 2027-02-20 (a Saturday) is worked instead of Monday 2027-02-22; the 23rd is a holiday.
    saturday = (2027, 2, 20)
    assert MOSCOW_OFFICE.is_open(local(MOSCOW, *saturday, 10))
    assert not MOSCOW_OFFICE.is_open(local(MOSCOW, 2027, 2, 22, 10))
    assert MOSCOW_OFFICE.add(local(MOSCOW, 2027, 2, 19, 17, 30), HOUR) == local(MOSCOW, *saturday, 9, 30)
    assert MOSCOW_OFFICE.add(local(MOSCOW, *saturday, 17, 30), HOUR) == local(MOSCOW, 2027, 2, 24, 9, 30)
    assert MOSCOW_OFFICE.between(local(MOSCOW, *saturday), local(MOSCOW, 2027, 2, 21)) == 8 * HOUR
    for worked_saturday in [(2024, 4, 27), (2024, 11, 2), (2024, 12, 28), (2025, 11, 1)]:
        assert MOSCOW_OFFICE.is_open(local(MOSCOW, *worked_saturday, 11))


def test_transferred_working_day_gets_the_hours_of_a_normal_weekday():
    office = calendar({"mon": ["10:00-19:00"], "tue-fri": ["09:00-18:00"]}, country="RU")
    windows = office.working_windows(date(2027, 2, 20))
    assert windows == ((local(MOSCOW, 2027, 2, 20, 10), local(MOSCOW, 2027, 2, 20, 19)),)


def test_part_day_holiday_and_extra_day_off():
    office = calendar({"mon-fri": LUNCH_BREAK}, extra=["2026-12-31", {"date": "2026-12-30", "hours": ["09:00-15:00"]}])
    assert office.between(local(MOSCOW, 2026, 12, 30), local(MOSCOW, 2026, 12, 31)) == 6 * HOUR
    assert not office.is_open(local(MOSCOW, 2026, 12, 30, 15))
    assert office.add(local(MOSCOW, 2026, 12, 30, 14, 30), HOUR) == local(MOSCOW, 2027, 1, 1, 9, 30)


def test_team_workdays_on_weekends():
    office = calendar(
        {"mon": ["10:00-19:00"], "tue-fri": ["09:00-18:00"]},
        workdays=[date(2026, 11, 28), {"date": "2026-12-05", "as": "fri"}],
    )
    assert office.working_windows(date(2026, 11, 28)) == (
        (local(MOSCOW, 2026, 11, 28, 10), local(MOSCOW, 2026, 11, 28, 19)),
    )
    assert office.working_windows(date(2026, 12, 5)) == (
        (local(MOSCOW, 2026, 12, 5, 9), local(MOSCOW, 2026, 12, 5, 18)),
    )
    assert office.working_windows(date(2026, 12, 6)) == ()


def test_year_end_with_us_holidays():
    office = calendar({"mon-fri": ["09:00-18:00"]}, "America/New_York", country="US")
    # 2027-01-01 (Friday) is New Year's Day.
    due = office.add(local(NEW_YORK, 2026, 12, 31, 17, 30), HOUR)
    assert due == local(NEW_YORK, 2027, 1, 4, 9, 30) == datetime(2027, 1, 4, 14, 30, tzinfo=UTC)
    assert office.between(local(NEW_YORK, 2026, 12, 31, 17, 30), due) == HOUR


def test_year_end_without_holidays_rolls_into_the_new_year():
    assert PLAIN_OFFICE.add(local(MOSCOW, 2026, 12, 31, 17, 30), HOUR) == local(MOSCOW, 2027, 1, 1, 9, 30)


def test_holidays_read_from_yaml_with_bare_dates():
    spec = yaml.safe_load(
        textwrap.dedent("""
        timezone: Europe/Berlin
        hours: {Mon-Fri: "08:00-16:00", "sat,sun": []}
        holidays:
          country: DE
          subdivision: BY
          extra: [2026-12-24, {date: 2026-12-23, hours: ["08:00-12:00"]}]
          workdays: [{date: 2026-12-19, as: wed}]
    """)
    )
    office = parse_calendar("munich", spec, "Europe/Moscow")
    assert office.timezone == BERLIN
    assert office.between(local(BERLIN, 2026, 12, 19), local(BERLIN, 2026, 12, 28)) == (8 + 8 + 8 + 4) * HOUR
    assert not office.is_open(local(BERLIN, 2027, 1, 6, 10))  # Epiphany in Bavaria


# --- 24/7 --------------------------------------------------------------------------------------


def test_always_is_plain_time_in_utc():
    start = local(MOSCOW, 2026, 11, 28, 3, 0, 0, 5)
    assert ALWAYS.always_open and ALWAYS.timezone == ZoneInfo("UTC")
    later = start.astimezone(UTC) + timedelta(days=3, microseconds=1)
    assert ALWAYS.add(start, timedelta(days=3, microseconds=1)) == later
    assert ALWAYS.between(start, later) == timedelta(days=3, microseconds=1)
    assert ALWAYS.between(later, start) == -timedelta(days=3, microseconds=1)
    assert ALWAYS.is_open(start) and ALWAYS.next_open(start) == start


def test_named_24_7_calendars():
    around_the_clock = parse_calendar("always", "24/7", "Europe/Moscow")
    assert around_the_clock.always_open and around_the_clock.timezone == MOSCOW
    assert around_the_clock.name == "always"
    daily = parse_calendar("support", {"timezone": "Europe/Berlin", "hours": {"daily": ["00:00-24:00"]}}, "UTC")
    assert daily.always_open and daily.timezone == BERLIN
    with_holidays = parse_calendar("support", {"hours": "24/7", "holidays": {"extra": ["2026-12-31"]}}, "UTC")
    assert not with_holidays.always_open
    new_year_eve = datetime(2026, 12, 31, 12, tzinfo=UTC)
    assert not with_holidays.is_open(new_year_eve)
    assert with_holidays.add(new_year_eve, HOUR) == datetime(2027, 1, 1, 1, tzinfo=UTC)


# --- Clock changes -----------------------------------------------------------------------------


def _hours_worked(office: BusinessCalendar, day: date) -> timedelta:
    return sum((end - start for start, end in office.working_windows(day)), timedelta(0))


@pytest.mark.parametrize(
    "zone, spring, autumn",
    [
        ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
    ],
)
def test_windows_on_clock_change_days(zone, spring, autumn):
    office_day = calendar({"daily": ["09:00-18:00"]}, zone)
    assert _hours_worked(office_day, spring) == _hours_worked(office_day, autumn) == 9 * HOUR
    night_shift = calendar({"daily": ["01:00-04:00"]}, zone)
    assert _hours_worked(night_shift, spring) == 2 * HOUR  # the skipped hour is not worked
    assert _hours_worked(night_shift, autumn) == 4 * HOUR  # the repeated hour is worked twice
    inside_the_gap = calendar({"daily": ["02:00-03:00", "12:00-13:00"]}, zone)
    assert _hours_worked(inside_the_gap, spring) == HOUR
    whole_day = calendar({"daily": ["00:00-12:00", "12:00-24:00"]}, zone)
    assert _hours_worked(whole_day, spring) == 23 * HOUR
    assert _hours_worked(whole_day, autumn) == 25 * HOUR
    assert len(whole_day.working_windows(spring)) == 1


def test_deadline_across_the_spring_change_in_berlin():
    office = calendar({"mon-fri": ["09:00-18:00"]}, "Europe/Berlin")
    due = office.add(local(BERLIN, 2026, 3, 27, 17), 2 * HOUR)
    assert due == local(BERLIN, 2026, 3, 30, 10) == datetime(2026, 3, 30, 8, tzinfo=UTC)
    assert office.between(local(BERLIN, 2026, 3, 27, 9), local(BERLIN, 2026, 3, 30, 9)) == 9 * HOUR


def test_deadline_across_the_autumn_change_in_new_york():
    office = calendar({"mon-fri": ["09:00-18:00"]}, "America/New_York")
    due = office.add(local(NEW_YORK, 2026, 10, 30, 17), 2 * HOUR)
    assert due == local(NEW_YORK, 2026, 11, 2, 10) == datetime(2026, 11, 2, 15, tzinfo=UTC)


def test_night_shift_across_the_autumn_change_in_new_york():
    shift = calendar({"daily": ["00:00-04:00"]}, "America/New_York")
    start = local(NEW_YORK, 2026, 11, 1, 0, 30)
    assert shift.add(start, 4 * HOUR) == local(NEW_YORK, 2026, 11, 1, 3, 30)  # 01:00-02:00 ran twice
    assert shift.add(start, timedelta(hours=4, minutes=30)) == local(NEW_YORK, 2026, 11, 1, 4, 0)
    assert shift.add(start, timedelta(hours=4, minutes=31)) == local(NEW_YORK, 2026, 11, 2, 0, 1)


def test_clock_change_at_midnight_in_santiago():
    shift = calendar({"daily": ["22:00-24:00", "00:00-02:00"]}, "America/Santiago")
    # 2026-09-06 00:00 does not exist: clocks jump from 24:00 on the 5th to 01:00 on the 6th.
    start = local(SANTIAGO, 2026, 9, 5, 23)
    assert shift.add(start, 2 * HOUR) == local(SANTIAGO, 2026, 9, 6, 2)
    assert shift.between(local(SANTIAGO, 2026, 9, 5, 12), local(SANTIAGO, 2026, 9, 6, 12)) == 3 * HOUR


def test_moscow_has_no_clock_changes():
    office = calendar({"daily": ["09:00-18:00"]})
    for month in range(1, 13):
        assert _hours_worked(office, date(2026, month, 15)) == 9 * HOUR


# --- Bounded searches --------------------------------------------------------------------------


def test_calendar_without_working_time_for_years_raises_instead_of_hanging():
    first, saturdays = date(2026, 1, 3), []
    while first < date(2030, 1, 1):
        saturdays.append(first.isoformat())
        first += timedelta(days=7)
    office = calendar({"sat": ["10:00-14:00"]}, extra=saturdays)
    start = local(MOSCOW, 2026, 1, 1)
    with pytest.raises(RulesError) as info:
        office.add(start, HOUR)
    assert info.value.errors[0][0] == "calendars.office"
    assert f"no working time for {MAX_IDLE_DAYS} days" in info.value.errors[0][1]
    with pytest.raises(RulesError):
        office.next_open(start)
    assert office.between(start, local(MOSCOW, 2029, 12, 1)) == timedelta(0)
    assert office.add(start, timedelta(0)) == start


# --- Reading calendars from the rules file -----------------------------------------------------


@pytest.mark.parametrize(
    "spec, path, message",
    [
        (
            {"hours": {"mon-fri": ["09:00-13:00", "14:00-13:00"]}},
            "calendars.office.hours.mon-fri[1]",
            '"14:00-13:00" ends before it starts',
        ),
        (
            {"hours": {"mon-fri": ["09:00-13:00", "12:00-15:00"]}},
            "calendars.office.hours.mon-fri[1]",
            '"12:00-15:00" overlaps "09:00-13:00"',
        ),
        (
            {"hours": {"mon": ["08:00-18:00", "10:00-11:00", "12:00-13:00"]}},
            "calendars.office.hours.mon[2]",
            '"12:00-13:00" overlaps "08:00-18:00"',
        ),
        ({"hours": {"mon": ["09:00-09:00"]}}, "calendars.office.hours.mon[0]", '"09:00-09:00" is empty'),
        (
            {"hours": {"mon": ["9-18"]}},
            "calendars.office.hours.mon[0]",
            '"9-18" is not a time window; write HH:MM-HH:MM, e.g. 09:00-18:00',
        ),
        (
            {"hours": {"mon": ["09:00-24:30"]}},
            "calendars.office.hours.mon[0]",
            '"09:00-24:30" is not a time window; write HH:MM-HH:MM, e.g. 09:00-18:00',
        ),
        (
            {"hours": {"mon": "22:00-02:00"}},
            "calendars.office.hours.mon",
            '"22:00-02:00" ends before it starts; split a night shift at midnight (22:00-24:00, then 00:00-02:00 the next day)',
        ),
        (
            {"hours": {"mon": 9}},
            "calendars.office.hours.mon",
            'needs a list of windows like ["09:00-18:00"], or [] for a day off',
        ),
        (
            {"hours": {"mon-fri": LUNCH_BREAK, "fri": ["10:00-12:00"]}},
            "calendars.office.hours.fri",
            '"fri" is already given by "mon-fri"',
        ),
        (
            {"hours": {"daily": LUNCH_BREAK, "sat,sun": []}},
            "calendars.office.hours.sat,sun",
            '"sat" is already given by "daily"',
        ),
        (
            {"hours": {"mon-frii": LUNCH_BREAK}},
            "calendars.office.hours.mon-frii",
            '"mon-frii" is not a day; use mon..sun, a range like mon-fri, a list like sat,sun, or daily',
        ),
        (
            {"hours": {"fri-mon": LUNCH_BREAK}},
            "calendars.office.hours.fri-mon",
            '"fri-mon" runs backwards; list the days, e.g. fri,mon',
        ),
        (
            {"hours": {"mon-fri,wed": LUNCH_BREAK}},
            "calendars.office.hours.mon-fri,wed",
            '"mon-fri,wed" names wed twice',
        ),
        (
            {"hours": {"mon-fri": [], "sat": []}},
            "calendars.office.hours",
            "has no working time; give at least one window, or use 24/7",
        ),
        ({}, "calendars.office.hours", 'needs hours, e.g. {mon-fri: ["09:00-18:00"]}, or 24/7'),
        (
            {"hours": "9 to 5"},
            "calendars.office.hours",
            "'9 to 5' is not a set of hours; needs hours, e.g. {mon-fri: [\"09:00-18:00\"]}, or 24/7",
        ),
        (
            {"hours": "24/7", "timezone": "Mars/Olympus"},
            "calendars.office.timezone",
            '"Mars/Olympus" is not an IANA time zone (e.g. Europe/Moscow)',
        ),
        (
            {"hours": "24/7", "shifts": 2},
            "calendars.office.shifts",
            "unknown key; a calendar takes timezone, hours, holidays",
        ),
        (
            {"hours": "24/7", "holidays": {"country": "RU", "regions": 1}},
            "calendars.office.holidays.regions",
            "unknown key; holidays take country, subdivision, extra, workdays",
        ),
        (
            {"hours": "24/7", "holidays": ["2026-12-31"]},
            "calendars.office.holidays",
            "['2026-12-31'] is not a mapping; use keys country, subdivision, extra, workdays",
        ),
        (
            {"hours": "24/7", "holidays": {"country": "XX"}},
            "calendars.office.holidays.country",
            '"XX" is not a country the holidays package knows; use an ISO code such as RU, US or DE',
        ),
        (
            {"hours": "24/7", "holidays": {"country": False}},
            "calendars.office.holidays.country",
            'write "NO" in quotes: YAML reads a bare NO as false',
        ),
        (
            {"hours": "24/7", "holidays": {"country": "NL", "subdivision": "XX"}},
            "calendars.office.holidays.subdivision",
            '"XX" is not a subdivision of NL; use one of Midden, Noord, Zuid',
        ),
        (
            {"hours": "24/7", "holidays": {"country": "AL", "subdivision": "XX"}},
            "calendars.office.holidays.subdivision",
            "AL has no subdivisions; leave it out",
        ),
        (
            {"hours": "24/7", "holidays": {"subdivision": "BY"}},
            "calendars.office.holidays.subdivision",
            "needs holidays.country",
        ),
        (
            {"hours": "24/7", "holidays": {"extra": "2026-12-31"}},
            "calendars.office.holidays.extra",
            "must be a list of dates",
        ),
        (
            {"hours": "24/7", "holidays": {"extra": ["31.12.2026"]}},
            "calendars.office.holidays.extra[0]",
            '"31.12.2026" is not a date; write YYYY-MM-DD',
        ),
        (
            {"hours": "24/7", "holidays": {"extra": ["2026-02-30"]}},
            "calendars.office.holidays.extra[0]",
            '"2026-02-30" is not a date; write YYYY-MM-DD',
        ),
        (
            {"hours": "24/7", "holidays": {"extra": [{"date": "2026-12-31", "hours": ["09:00-08:00"]}]}},
            "calendars.office.holidays.extra[0].hours[0]",
            '"09:00-08:00" ends before it starts',
        ),
        (
            {"hours": "24/7", "holidays": {"extra": [{"date": "2026-12-31", "until": "12:00"}]}},
            "calendars.office.holidays.extra[0].until",
            "unknown key; use date, hours",
        ),
        (
            {"hours": "24/7", "holidays": {"extra": [{"hours": []}]}},
            "calendars.office.holidays.extra[0]",
            "needs a date",
        ),
        (
            {"hours": "24/7", "holidays": {"extra": [{"date": "someday"}]}},
            "calendars.office.holidays.extra[0].date",
            '"someday" is not a date; write YYYY-MM-DD',
        ),
        (
            {"hours": "24/7", "holidays": {"extra": ["2026-12-31", date(2026, 12, 31)]}},
            "calendars.office.holidays.extra[1]",
            "2026-12-31 is listed twice",
        ),
        (
            {"hours": "24/7", "holidays": {"extra": ["2026-11-28"], "workdays": ["2026-11-28"]}},
            "calendars.office.holidays.workdays[0]",
            "2026-11-28 is listed twice",
        ),
        (
            {"hours": "24/7", "holidays": {"workdays": [{"date": "2026-11-28", "as": "monday"}]}},
            "calendars.office.holidays.workdays[0].as",
            '"monday" is not a weekday; use one of mon, tue, wed, thu, fri, sat, sun',
        ),
        (
            {"hours": {"tue-fri": LUNCH_BREAK}, "holidays": {"workdays": ["2026-11-28"]}},
            "calendars.office.holidays.workdays[0]",
            "mon has no hours to work by; say which weekday's hours to use with `as`",
        ),
        (42, "calendars.office", "42 is not a calendar; write 24/7 or a mapping with hours"),
        ("9-18", "calendars.office", "'9-18' is not a calendar; write 24/7 or a mapping with hours"),
    ],
)
def test_rules_file_mistakes_are_reported_with_their_path(spec, path, message):
    assert errors_of(spec).get(path) == message


def test_every_mistake_is_reported_at_once():
    errors = errors_of(
        {
            "hours": {"mon-fri": ["09:00-13:00", "14:00-13:00"], "sun": ["25:00-26:00"]},
            "holidays": {"country": "XX", "extra": ["tomorrow"]},
            "colour": "blue",
        }
    )
    assert set(errors) == {
        "calendars.office.hours.mon-fri[1]",
        "calendars.office.hours.sun[0]",
        "calendars.office.holidays.country",
        "calendars.office.holidays.extra[0]",
        "calendars.office.colour",
    }


def test_a_bad_default_timezone_is_reported_at_the_file_level():
    assert errors_of({"hours": {"mon": ["09:00-18:00"]}}, "Mars/Olympus") == {
        "timezone": '"Mars/Olympus" is not an IANA time zone (e.g. Europe/Moscow)'
    }
    assert parse_calendar(
        "x", {"hours": {"mon": ["09:00-18:00"]}, "timezone": "UTC"}, "Mars/Olympus"
    ).timezone == ZoneInfo("UTC")


def test_a_bad_window_is_not_also_reported_as_a_week_without_work():
    assert errors_of({"hours": {"mon": ["25:00-26:00"]}}) == {
        "calendars.office.hours.mon[0]": '"25:00-26:00" is not a time window; write HH:MM-HH:MM, e.g. 09:00-18:00'
    }


def test_calendars_survive_pickling_for_worker_processes():
    copy = pickle.loads(pickle.dumps(MOSCOW_OFFICE))
    start = local(MOSCOW, 2026, 12, 30, 17)
    assert copy.name == "office" and copy.add(start, 2 * HOUR) == MOSCOW_OFFICE.add(start, 2 * HOUR)


def test_paths_can_be_given_by_the_caller():
    with pytest.raises(RulesError) as info:
        parse_calendar("office", {"hours": {"mon": ["18:00-09:00"]}}, "UTC", path="teams.sales.calendar")
    assert info.value.errors[0][0] == "teams.sales.calendar.hours.mon[0]"


def test_day_keys_in_every_form():
    office = calendar({"Mon-Wed": ["09:00-18:00"], "thu, fri": "10:00 - 19:00", "sat": [], "sun": ["00:00-24:00"]})
    hours = [_hours_worked(office, date(2026, 11, 23) + timedelta(days=offset)) for offset in range(7)]
    assert hours == [9 * HOUR] * 5 + [timedelta(0), 24 * HOUR]
    assert (
        calendar({"daily": ["08:00-09:00"]}).between(local(MOSCOW, 2026, 11, 23), local(MOSCOW, 2026, 11, 30))
        == 7 * HOUR
    )


# --- Properties of the arithmetic --------------------------------------------------------------


def _clock_changes(zone: ZoneInfo) -> list[datetime]:
    """Instants a little before each offset change of ``zone`` in 2025-2028."""
    changes, moment = [], datetime(2025, 1, 1, tzinfo=UTC)
    while moment < datetime(2028, 12, 31, tzinfo=UTC):
        following = moment + timedelta(hours=6)
        if moment.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            changes.append(moment)
        moment = following
    return changes


CLOCK_CHANGES = sorted(change for zone in ZONES for change in _clock_changes(zone))


def _in_utc(moment: datetime) -> datetime:
    """Compare in UTC: Python orders datetimes of one zone by wall clock and never finds a
    repeated-hour time equal to one in another zone."""
    return moment.astimezone(UTC)


def _window_text(opens: int, closes: int) -> str:
    return f"{opens // 60:02d}:{opens % 60:02d}-{closes // 60:02d}:{closes % 60:02d}"


@st.composite
def weekly_hours(draw) -> dict:
    """Random weekly hours on a 15-minute grid: up to three windows a day, some days off."""
    week = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        marks = sorted(draw(st.lists(st.integers(0, 96), unique=True, max_size=6)))
        week[day] = [_window_text(marks[i] * 15, marks[i + 1] * 15) for i in range(0, len(marks) - 1, 2)]
    if not any(week.values()):
        week["mon"] = ["09:00-18:00"]
    return week


FIXED_CALENDARS = [
    MOSCOW_OFFICE,
    calendar({"mon-fri": ["08:00-12:00", "13:00-17:30"], "sat": ["10:00-14:00"]}, "Europe/Berlin", country="DE"),
    calendar({"daily": ["00:30-02:30", "03:00-05:00", "21:00-24:00"]}, "America/New_York", country="US"),
    calendar({"daily": ["01:30-02:30", "02:45-03:15", "23:00-24:00"]}, "Europe/Berlin"),
    calendar({"daily": ["00:00-00:30", "09:00-18:00", "23:30-24:00"]}, "America/Santiago"),
    calendar({"daily": ["01:45-02:15", "09:00-17:00"]}, "Australia/Lord_Howe"),
]

random_calendars = st.builds(
    lambda hours, zone: parse_calendar("random", {"hours": hours, "timezone": zone.key}, "UTC"),
    weekly_hours(),
    st.sampled_from(ZONES),
)
calendars = st.one_of(st.sampled_from(FIXED_CALENDARS), random_calendars)
instants = st.one_of(
    st.datetimes(datetime(2025, 1, 1), datetime(2028, 6, 30)).map(lambda moment: moment.replace(tzinfo=UTC)),
    st.builds(
        lambda change, shift: change + shift,
        st.sampled_from(CLOCK_CHANGES),
        st.timedeltas(-timedelta(days=4), timedelta(days=4)),
    ),
).flatmap(lambda moment: st.sampled_from(ZONES).map(moment.astimezone))
amounts = st.one_of(
    st.timedeltas(timedelta(0), timedelta(hours=3)),
    st.timedeltas(timedelta(0), timedelta(days=20)),
    st.integers(0, 40).map(lambda quarters: quarters * timedelta(minutes=15)),
)
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTIES
@given(calendars, instants, amounts)
def test_measuring_what_was_added_gives_the_amount_back(office, start, amount):
    due = office.add(start, amount)
    assert due.tzinfo is UTC
    assert office.between(start, due) == amount
    assert office.between(due, start) == -amount


@PROPERTIES
@given(calendars, instants, amounts)
def test_a_deadline_falls_in_working_time_or_at_a_window_end(office, start, amount):
    due = office.add(start, amount)
    if amount:
        assert due > start
        assert office.is_open(due - MICROSECOND)  # work ran right up to the deadline
        assert due == office.next_open(due) or not office.is_open(due)
    else:
        assert due == _in_utc(start)


@PROPERTIES
@given(calendars, instants, instants, amounts)
def test_later_starts_never_get_earlier_deadlines(office, first, second, amount):
    first, second = sorted([first, second], key=_in_utc)
    assert office.add(first, amount) <= office.add(second, amount)


@PROPERTIES
@given(calendars, instants, amounts, amounts)
def test_adding_in_steps_equals_adding_at_once(office, start, first, second):
    assert office.add(office.add(start, first), second) == office.add(start, first + second)
    assert office.add(start, min(first, second)) <= office.add(start, max(first, second))


@PROPERTIES
@given(calendars, instants, instants, instants)
def test_working_time_adds_up_over_consecutive_periods(office, first, second, third):
    assert office.between(first, third) == office.between(first, second) + office.between(second, third)
    assert (
        timedelta(0) <= office.between(*sorted([first, second], key=_in_utc)) <= abs(_in_utc(second) - _in_utc(first))
    )


@PROPERTIES
@given(calendars, instants)
def test_next_open_is_the_first_working_instant(office, moment):
    opening = office.next_open(moment)
    assert opening >= moment and office.is_open(opening)
    assert office.between(moment, opening) == timedelta(0)
    assert (opening == _in_utc(moment)) == office.is_open(moment)


@PROPERTIES
@given(weekly_hours(), st.sampled_from(ZONES), instants)
def test_is_open_matches_the_wall_clock_away_from_clock_changes(hours, zone, moment):
    office = parse_calendar("random", {"hours": hours, "timezone": zone.key}, "UTC")
    assume(
        zone.utcoffset(moment.replace(tzinfo=None) - timedelta(hours=30))
        == zone.utcoffset(moment.replace(tzinfo=None) + timedelta(hours=30))
    )
    wall = moment.astimezone(zone)
    minute = wall.hour * 60 + wall.minute + (wall.second + wall.microsecond / 1e6) / 60
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[wall.weekday()]
    expected = any(int(w[:2]) * 60 + int(w[3:5]) <= minute < int(w[6:8]) * 60 + int(w[9:11]) for w in hours[day])
    assert office.is_open(moment) == expected


@PROPERTIES
@given(st.sampled_from(ZONES), instants, st.timedeltas(timedelta(0), timedelta(days=10)))
def test_a_calendar_open_all_day_every_day_counts_real_time_across_clock_changes(zone, start, amount):
    whole_days = parse_calendar(
        "split", {"hours": {"daily": ["00:00-07:15", "07:15-24:00"]}, "timezone": zone.key}, "UTC"
    )
    assert not whole_days.always_open
    start_utc = start.astimezone(UTC)  # aware arithmetic in a local zone would add wall-clock time
    assert whole_days.add(start, amount) == start_utc + amount
    assert whole_days.between(start, start_utc + amount) == amount


@settings(max_examples=40, deadline=None)
@given(calendars, st.sampled_from(CLOCK_CHANGES), st.integers(-36 * 60, 12 * 60), st.integers(0, 48 * 60))
def test_between_counts_the_same_minutes_that_is_open_reports(office, change, offset_minutes, span_minutes):
    start = change + offset_minutes * MINUTE  # windows start and end on whole minutes in every zone used
    minutes_open = sum(office.is_open(start + step * MINUTE) for step in range(span_minutes))
    assert office.between(start, start + span_minutes * MINUTE) == minutes_open * MINUTE
