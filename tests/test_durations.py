from datetime import timedelta

import pytest

from sla_guard.core.rules.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1d4h", timedelta(days=1, hours=4)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("0m", timedelta(0)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parses_the_forms_ops_write(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text, hint",
    [
        ("15 minutes", "use 15m"),
        ("2 hours", "use 2h"),
        ("3 days", "use 3d"),
        ("45 sec", "use 45s"),
    ],
)
def test_spoken_durations_get_a_precise_hint(text, hint):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert f'"{text}" is not a duration; {hint}' == str(info.value)


@pytest.mark.parametrize("bad", ["", "m", "15", "1.5h", "h2", "15mins and more", "-5m", None, True, [1]])
def test_refuses_anything_else(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_bare_number_asks_for_a_unit():
    with pytest.raises(ValueError, match="has no unit"):
        parse_duration(15)


@pytest.mark.parametrize("text", ["90s", "15m", "2h", "1d", "1d4h", "1d1h1m1s"])
def test_format_round_trips(text):
    assert format_duration(parse_duration(text)) == text.replace("90s", "1m30s")
