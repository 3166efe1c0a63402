"""The input bounds as pure functions: every edge of every bound (see DESIGN "Input bounds")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sla_guard.core import bounds
from sla_guard.exceptions import InvalidEvent

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_json_nesting_is_counted_outside_strings_only():
    bounds.check_depth(b"[" * 64 + b"]" * 64)
    bounds.check_depth(b'{"a": "' + b"[" * 500 + b'"}')
    bounds.check_depth(b'["\\"' + b"[" * 100 + b'"]')
    with pytest.raises(InvalidEvent) as refused:
        bounds.check_depth(b"[" * 65 + b"]" * 65)
    assert refused.value.field == "body"
    with pytest.raises(InvalidEvent):
        bounds.check_depth('{"a":' * 65 + "1" + "}" * 65)


def test_json_nesting_of_siblings_does_not_add_up():
    bounds.check_depth(b"[" + b"[[]]," * 1000 + b"[]]")


@pytest.mark.parametrize(
    "moment, problem",
    [
        (datetime(2000, 1, 1, tzinfo=UTC), None),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), "must not be before 2000-01-01"),
        (NOW + timedelta(days=1), None),
        (NOW + timedelta(days=1, microseconds=1), "must not be more than one day in the future"),
        (datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))), "is out of range for a date"),
        (datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))), "is out of range for a date"),
    ],
)
def test_moments_between_2000_and_a_day_after_now(moment, problem):
    assert bounds.moment_problem(moment, NOW) == problem


def test_without_now_only_the_past_bound_holds():
    assert bounds.moment_problem(datetime(2900, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    "value, limit, problem",
    [
        ("a" * 200, 200, None),
        ("a" * 201, 200, "is longer than 200 characters"),
        ("a\x00b", 200, "contains a NUL character"),
        ("a\ud83db", 200, "contains an invalid character (lone surrogate)"),
        ("Привет 👋", 200, None),
    ],
)
def test_text_is_bounded_and_nul_free(value, limit, problem):
    assert bounds.text_problem(value, limit) == problem


@pytest.mark.parametrize("url", ["https://crm.example/leads/1", "HTTP://crm.example"])
def test_lead_links_may_be_http_or_https(url):
    assert bounds.web_url(url) == url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://crm.example/1", "https:///nohost", "//crm.example/1"])
def test_other_lead_links_are_refused(url):
    with pytest.raises(ValueError):
        bounds.web_url(url)


def test_excerpts_are_short_and_printable():
    assert bounds.excerpt("x" * 500) == "x" * 40 + "…"
    assert bounds.excerpt("a\x00\nb") == "a\\x00\\nb"


def test_clean_text_can_always_be_stored():
    assert bounds.clean_text("a\x00b\ud800", 3) == "a\ufffdb"
