"""Follow-up cadences: started by a stage, the first touch or a touch outcome; done, missed, cancelled. Pure."""

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from sla_guard.core.engine import clock_steps, due_steps, next_fire_at, replay
from sla_guard.core.events import LeadEvent
from sla_guard.core.follow_ups import task_text
from sla_guard.core.rules.loading import parse_rules

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

RULES = textwrap.dedent("""
    timezone: UTC
    rules:
      - name: b2b
        first_touch: {within: 2h}
        follow_ups:
          - name: proposal
            when: {stage: proposal}
            after: [1d, 3d, 7d]
            grace: 4h
            task: "Follow up on the proposal for {lead.name}"
            escalate: [{after: 0m, notify: [owner, manager]}, {after: 1d, notify: [head]}]
          - name: retry-call
            when: {touch_outcome: no_answer}
            after: [2h, 1d]
            grace: 1h
            until: [touch, close]
            task: "Call {lead.name} again"
          - name: welcome
            when: {first_touch: true}
            after: [1h]
            task: "Send the welcome pack"
""")


@pytest.fixture(scope="module")
def rules():
    return parse_rules(RULES, env={})


def ev(n, kind, hours, **extra):
    lead = {"id": "L1", **extra.pop("lead", {})}
    return LeadEvent.model_validate(
        {
            "event_id": f"e{n}",
            "type": kind,
            "occurred_at": (T0 + timedelta(hours=hours)).isoformat(),
            "lead": lead,
            **extra,
        }
    )


def steps_of(state, cadence):
    return sorted(
        (c for c in state.clocks if c.name.startswith(f"follow_up:{cadence}:")), key=lambda c: (c.cycle, c.name)
    )


def test_entering_the_stage_plans_every_step(rules):
    state = replay(
        "L1",
        [
            ev(1, "lead.created", 0, lead={"stage": "new", "name": "ACME"}),
            ev(2, "lead.stage_changed", 1, lead={"stage": "proposal"}),
        ],
        rules,
    )
    planned = steps_of(state, "proposal")
    assert [(c.name, c.started_at - T0, c.due_at - T0) for c in planned] == [
        ("follow_up:proposal:1", timedelta(days=1, hours=1), timedelta(days=1, hours=5)),
        ("follow_up:proposal:2", timedelta(days=3, hours=1), timedelta(days=3, hours=5)),
        ("follow_up:proposal:3", timedelta(days=7, hours=1), timedelta(days=7, hours=5)),
    ]
    assert all(c.stopped_at is None for c in planned)


def test_a_step_creates_its_task_then_escalates_when_missed(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead={"stage": "proposal"})], rules)
    first = steps_of(state, "proposal")[0]
    owed = clock_steps(first, rules.rule("b2b"), rules)
    assert [(s.level, s.kind, s.at - T0, s.notify) for s in owed] == [
        (0, "follow_up.task", timedelta(days=1), ("owner",)),
        (1, "follow_up.missed", timedelta(days=1, hours=4), ("owner", "manager")),
        (2, "follow_up.missed", timedelta(days=2, hours=4), ("head",)),
    ]
    assert due_steps(first, owed, set(), T0 + timedelta(hours=23)) == []
    assert next_fire_at(first, owed, {0}) == T0 + timedelta(days=1, hours=4)


def test_a_touch_after_the_task_appears_does_the_step(rules):
    events = [
        ev(1, "lead.created", 0, lead={"stage": "proposal"}),
        ev(2, "lead.touched", 26, touch={"channel": "call"}),
    ]
    first, second, third = steps_of(replay("L1", events, rules), "proposal")
    assert (first.stop_reason, first.stopped_at, first.status(T0 + timedelta(days=30))) == (
        "done",
        T0 + timedelta(hours=26),
        "met",
    )
    assert second.stopped_at is None and third.stopped_at is None


def test_a_late_touch_is_a_missed_step(rules):
    events = [ev(1, "lead.created", 0, lead={"stage": "proposal"}), ev(2, "lead.touched", 30)]
    assert steps_of(replay("L1", events, rules), "proposal")[0].status(T0 + timedelta(days=30)) == "missed"


@pytest.mark.parametrize(
    "ending",
    [
        ev(2, "lead.stage_changed", 50, lead={"stage": "negotiation"}),
        LeadEvent.model_validate(
            {
                "event_id": "e2",
                "type": "lead.closed",
                "outcome": "won",
                "occurred_at": (T0 + timedelta(hours=50)).isoformat(),
                "lead": {"id": "L1"},
            }
        ),
    ],
)
def test_moving_on_or_closing_cancels_the_remaining_steps(rules, ending):
    events = [ev(1, "lead.created", 0, lead={"stage": "proposal"}), ending]
    steps = steps_of(replay("L1", events, rules), "proposal")
    assert [(c.stop_reason, c.stopped_at - T0) for c in steps] == [("cancelled", timedelta(hours=50))] * 3
    assert [c.status(T0 + timedelta(days=30)) for c in steps] == ["cancelled"] * 3
    assert all(next_fire_at(c, clock_steps(c, rules.rule("b2b"), rules), set()) is None for c in steps)


def test_re_entering_the_stage_starts_a_new_cycle(rules):
    events = [
        ev(1, "lead.created", 0, lead={"stage": "proposal"}),
        ev(2, "lead.stage_changed", 2, lead={"stage": "negotiation"}),
        ev(3, "lead.stage_changed", 10, lead={"stage": "proposal"}),
    ]
    steps = steps_of(replay("L1", events, rules), "proposal")
    assert [(c.cycle, c.stop_reason) for c in steps] == [(0, "cancelled")] * 3 + [(1, None)] * 3
    assert steps[3].started_at == T0 + timedelta(days=1, hours=10)


def test_no_answer_starts_a_retry_cadence_that_a_real_conversation_ends(rules):
    events = [
        ev(1, "lead.created", 0, lead={"stage": "new"}),
        ev(2, "lead.touched", 1, touch={"channel": "call", "outcome": "no_answer"}),
    ]
    planned = steps_of(replay("L1", events, rules), "retry-call")
    assert [c.started_at - T0 for c in planned] == [timedelta(hours=3), timedelta(days=1, hours=1)]
    events.append(ev(3, "lead.touched", 2, touch={"channel": "call", "outcome": "reached"}))
    ended = steps_of(replay("L1", events, rules), "retry-call")
    assert [c.stop_reason for c in ended] == ["cancelled", "cancelled"]


def test_another_no_answer_restarts_the_retries(rules):
    events = [
        ev(1, "lead.created", 0, lead={"stage": "new"}),
        ev(2, "lead.touched", 1, touch={"channel": "call", "outcome": "no_answer"}),
        ev(3, "lead.touched", 4, touch={"channel": "call", "outcome": "no_answer"}),
    ]
    steps = steps_of(replay("L1", events, rules), "retry-call")
    assert [(c.cycle, c.stop_reason) for c in steps] == [(0, "done"), (0, "cancelled"), (1, None), (1, None)]


def test_the_first_touch_starts_its_cadence_once(rules):
    events = [ev(1, "lead.created", 0, lead={"stage": "new"}), ev(2, "lead.touched", 1), ev(3, "lead.touched", 5)]
    [welcome] = steps_of(replay("L1", events, rules), "welcome")
    assert (welcome.started_at, welcome.stop_reason) == (T0 + timedelta(hours=2), "done")


def test_task_text_fills_lead_fields(rules):
    cadence = rules.rule("b2b").follow_ups[0]
    assert task_text(cadence, {"lead_id": "L1", "name": "ACME"}) == "Follow up on the proposal for ACME"
    assert task_text(cadence, {"lead_id": "L1"}) == "Follow up on the proposal for "
