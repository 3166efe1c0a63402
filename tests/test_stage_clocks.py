"""Stage clocks, re-entered stages and pauses, counted in business time. Pure."""

import textwrap
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sla_guard.core.engine import FIRST_TOUCH, clock_steps, due_steps, next_fire_at, replay
from sla_guard.core.events import LeadEvent
from sla_guard.core.rules.loading import parse_rules

MSK = ZoneInfo("Europe/Moscow")
MONDAY = datetime(2026, 11, 23, tzinfo=MSK)  # a working Monday in Russia

RULES = textwrap.dedent("""
    timezone: Europe/Moscow
    calendars:
      office: {hours: {mon-fri: ["09:00-13:00", "14:00-18:00"]}}
    rules:
      - name: b2b
        calendar: office
        first_touch: {within: 2h, warn_at: 50%}
        stages:
          qualification: {max: 1d, notify: [owner, manager]}
        pause_in_stages: [waiting_for_client]
""")


@pytest.fixture(scope="module")
def rules():
    return parse_rules(RULES, env={})


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def ev(n, kind, when, **lead):
    return LeadEvent.model_validate(
        {"event_id": f"e{n}", "type": kind, "occurred_at": when.isoformat(), "lead": {"id": "L1", **lead}}
    )


def clocks(state, name):
    return [clock for clock in state.clocks if clock.name == name]


def test_a_lead_arriving_at_night_is_due_after_the_next_opening(rules):
    state = replay("L1", [ev(1, "lead.created", at(0, 22), stage="new")], rules)
    [clock] = clocks(state, FIRST_TOUCH)
    assert clock.due_at == at(1, 11)


def test_lunch_does_not_count(rules):
    state = replay("L1", [ev(1, "lead.created", at(0, 12), stage="new")], rules)
    assert clocks(state, FIRST_TOUCH)[0].due_at == at(0, 15)


def test_stage_clock_runs_in_business_time_and_each_entry_is_a_new_cycle(rules):
    events = [
        ev(1, "lead.created", at(0, 9), stage="new"),
        ev(2, "lead.stage_changed", at(0, 10), stage="qualification"),
        ev(3, "lead.stage_changed", at(0, 11), stage="proposal"),
        ev(4, "lead.stage_changed", at(1, 9), stage="qualification"),
    ]
    state = replay("L1", events, rules)
    first, second = clocks(state, "stage:qualification")
    assert (first.cycle, first.started_at, first.due_at) == (0, at(0, 10), at(1, 10))
    assert (first.stopped_at, first.stop_reason) == (at(0, 11), "left_stage")
    assert (second.cycle, second.started_at, second.due_at, second.stopped_at) == (1, at(1, 9), at(1, 18), None)


def test_stage_clock_escalates_to_its_targets(rules):
    state = replay("L1", [ev(1, "lead.created", at(0, 9), stage="qualification")], rules)
    [clock] = clocks(state, "stage:qualification")
    steps = clock_steps(clock, rules.rule("b2b"), rules)
    assert [(s.kind, s.at, s.notify) for s in steps] == [("stage.breach", at(0, 18), ("owner", "manager"))]


def test_a_pause_keeps_the_remaining_budget_in_business_time(rules):
    # Created Monday 17:00 with 2 working hours; paused at 17:30 (30 min used);
    # the client answers Tuesday 10:00: 1h30 left, so due 11:30 — not 17:30 + wall-clock time.
    events = [
        ev(1, "lead.created", at(0, 17), stage="new"),
        ev(2, "lead.stage_changed", at(0, 17, 30), stage="waiting_for_client"),
        ev(3, "lead.stage_changed", at(1, 10), stage="new"),
    ]
    paused = replay("L1", events[:2], rules)
    [clock] = clocks(paused, FIRST_TOUCH)
    assert clock.status(at(3, 0)) == "paused"
    assert clock.budget_used == timedelta(minutes=30)
    steps = clock_steps(clock, rules.rule("b2b"), rules)
    assert due_steps(clock, steps, set(), at(5, 0)) == [] and next_fire_at(clock, steps, set()) is None
    resumed = clocks(replay("L1", events, rules), FIRST_TOUCH)[0]
    assert (resumed.paused_at, resumed.stopped_at, resumed.due_at) == (None, None, at(1, 11, 30))
    assert resumed.status(at(1, 11)) == "running"


def test_the_warning_after_a_pause_comes_at_its_share_of_the_budget(rules):
    events = [
        ev(1, "lead.created", at(0, 9), stage="new"),
        ev(2, "lead.stage_changed", at(0, 9, 20), stage="waiting_for_client"),
        ev(3, "lead.stage_changed", at(0, 15), stage="new"),
    ]
    clock = clocks(replay("L1", events, rules), FIRST_TOUCH)[0]
    warning = clock_steps(clock, rules.rule("b2b"), rules)[0]
    assert (warning.kind, warning.at) == ("first_touch.warning", at(0, 15, 40))  # 60 of 120 min: 20 used + 40
    assert clock.due_at == at(0, 16, 40)


def test_coming_back_from_a_pause_to_another_stage_counts_as_leaving(rules):
    events = [
        ev(1, "lead.created", at(0, 9), stage="qualification"),
        ev(2, "lead.stage_changed", at(0, 10), stage="waiting_for_client"),
        ev(3, "lead.stage_changed", at(0, 12), stage="qualification"),
        ev(4, "lead.stage_changed", at(0, 16), stage="proposal"),
    ]
    state = replay("L1", events[:3], rules)
    [qualification] = clocks(state, "stage:qualification")
    assert qualification.cycle == 0 and qualification.due_at == at(1, 11)  # 1h used before the pause
    state = replay("L1", events, rules)
    [qualification] = clocks(state, "stage:qualification")
    assert (qualification.stopped_at, qualification.stop_reason) == (at(0, 16), "left_stage")
    [first_touch] = clocks(state, FIRST_TOUCH)
    assert first_touch.stop_reason == "stage_changed"


def test_closing_during_a_pause_stops_the_clock_when_the_pause_began(rules):
    events = [
        ev(1, "lead.created", at(0, 9), stage="new"),
        ev(2, "lead.stage_changed", at(0, 10), stage="waiting_for_client"),
        LeadEvent.model_validate(
            {
                "event_id": "e3",
                "type": "lead.closed",
                "occurred_at": at(2, 9).isoformat(),
                "lead": {"id": "L1"},
                "outcome": "lost",
            }
        ),
    ]
    [clock] = clocks(replay("L1", events, rules), FIRST_TOUCH)
    assert (clock.stopped_at, clock.stop_reason, clock.status(at(3, 0))) == (at(0, 10), "closed", "met")


def test_days_are_working_days_on_a_calendar_and_wall_days_without(rules):
    from sla_guard.core.rules.durations import business_amount, parse_duration

    office = rules.calendars["office"]
    assert office.working_day == timedelta(hours=8)
    assert business_amount(parse_duration("2d"), office.working_day) == timedelta(hours=16)
    assert business_amount(parse_duration("1d4h"), office.working_day) == timedelta(hours=12)
    assert business_amount(parse_duration("28h"), office.working_day) == timedelta(hours=28)
    assert business_amount(parse_duration("1d"), timedelta(hours=24)) == timedelta(days=1)
