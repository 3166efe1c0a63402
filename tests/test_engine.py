"""The pure decisions: a lead's clocks after its events, and what is owed when."""

from datetime import UTC, datetime, timedelta

import pytest

from sla_guard.core.engine import (
    FIRST_TOUCH,
    clock_steps,
    due_steps,
    next_fire_at,
    next_owner,
    replay,
    resolve_targets,
)
from sla_guard.core.events import LeadEvent
from sla_guard.core.rules.loading import parse_rules

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOT = {"source": "website", "priority": "hot", "owner": "anna", "team": "inbound"}


@pytest.fixture
def rules(rules_text):
    return parse_rules(rules_text, env={})


def ev(n, kind, minutes, lead_id="L1", **extra):
    lead = {"id": lead_id, **extra.pop("lead", {})}
    return LeadEvent.model_validate(
        {
            "event_id": f"e{n}",
            "type": kind,
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "lead": lead,
            **extra,
        }
    )


def first_touch(state):
    [clock] = [c for c in state.clocks if c.name == FIRST_TOUCH]
    return clock


def test_created_lead_gets_the_matching_rules_deadline(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead=HOT)], rules)
    clock = first_touch(state)
    assert state.rule_name == "hot website leads"
    assert clock.due_at == T0 + timedelta(minutes=15)
    assert clock.status(T0 + timedelta(minutes=14)) == "running"
    assert clock.status(T0 + timedelta(minutes=15)) == "overdue"


def test_other_leads_fall_to_the_default(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead={"source": "phone", "owner": "anna"})], rules)
    assert state.rule_name == "everything else"
    assert first_touch(state).due_at == T0 + timedelta(hours=2)


@pytest.mark.parametrize(
    "stopper, reason",
    [
        (dict(kind="lead.touched", touch={"channel": "call", "by": "anna"}), "touched"),
        (dict(kind="lead.stage_changed", lead={"stage": "qualification"}), "stage_changed"),
        (dict(kind="lead.closed", outcome="lost", reason="price"), "closed"),
    ],
)
def test_touch_stage_change_or_close_stops_the_clock(rules, stopper, reason):
    kind = stopper.pop("kind")
    events = [ev(1, "lead.created", 0, lead={**HOT, "stage": "new"}), ev(2, kind, 10, **stopper)]
    clock = first_touch(replay("L1", events, rules))
    assert clock.stopped_at == T0 + timedelta(minutes=10)
    assert clock.stop_reason == reason
    assert clock.status(T0 + timedelta(days=1)) == "met"


def test_a_late_touch_is_a_missed_sla(rules):
    events = [ev(1, "lead.created", 0, lead=HOT), ev(2, "lead.touched", 20)]
    assert first_touch(replay("L1", events, rules)).status(T0 + timedelta(days=1)) == "missed"


def test_moving_within_the_initial_stage_does_not_count(rules):
    events = [
        ev(1, "lead.created", 0, lead={**HOT, "stage": "new"}),
        ev(2, "lead.stage_changed", 5, lead={"stage": "new"}),
    ]
    assert first_touch(replay("L1", events, rules)).stopped_at is None


def test_reassignment_keeps_the_clock_and_changes_the_owner(rules):
    events = [
        ev(1, "lead.created", 0, lead=HOT),
        ev(2, "lead.assigned", 5, lead={"owner": "boris"}, previous_owner="anna"),
    ]
    state = replay("L1", events, rules)
    assert first_touch(state).stopped_at is None
    assert first_touch(state).due_at == T0 + timedelta(minutes=15)
    assert state.fields["owner"] == "boris"


def test_order_of_arrival_does_not_matter(rules):
    events = [
        ev(1, "lead.created", 0, lead=HOT),
        ev(2, "lead.touched", 10),
        ev(3, "lead.updated", 30, lead={"priority": "cold"}),
    ]
    in_order = replay("L1", events, rules)
    for arrival in ([events[2], events[0], events[1]], [events[1], events[2], events[0]], events[::-1]):
        assert replay("L1", arrival, rules) == in_order
    assert first_touch(in_order).stop_reason == "touched"
    assert in_order.fields["priority"] == "cold"


def test_a_late_older_event_does_not_undo_a_newer_state(rules):
    # The close (t=30) arrived first; a stage change from t=20 arrives afterwards.
    events = [
        ev(1, "lead.created", 0, lead=HOT),
        ev(2, "lead.closed", 30, outcome="won"),
        ev(3, "lead.stage_changed", 20, lead={"stage": "proposal"}),
    ]
    state = replay("L1", events, rules)
    assert state.status == "won"
    assert state.fields["stage"] == "proposal"


def test_unknown_lead_is_tracked_without_a_first_touch_clock(rules):
    state = replay("L1", [ev(1, "lead.touched", 0, lead={"owner": "anna"})], rules)
    assert state.known is False
    assert state.first_touch_at == T0
    assert state.clocks == ()


def test_touch_seen_before_creation_meets_the_sla(rules):
    state = replay("L1", [ev(2, "lead.touched", -1), ev(1, "lead.created", 0, lead=HOT)], rules)
    assert first_touch(state).status(T0 + timedelta(days=1)) == "met"


def test_an_update_before_the_touch_can_change_the_rule(rules):
    events = [
        ev(1, "lead.created", 0, lead={"source": "website", "owner": "anna"}),
        ev(2, "lead.updated", 1, lead={"priority": "hot"}),
    ]
    state = replay("L1", events, rules)
    assert state.rule_name == "hot website leads"
    assert first_touch(state).due_at == T0 + timedelta(minutes=15)


def test_a_second_creation_is_ignored(rules):
    events = [ev(1, "lead.created", 0, lead=HOT), ev(2, "lead.created", 60, lead=HOT)]
    assert first_touch(replay("L1", events, rules)).started_at == T0


def test_steps_warning_then_ladder(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead=HOT)], rules)
    clock = first_touch(state)
    steps = clock_steps(clock, rules.rule(state.rule_name), rules)
    assert [(s.level, s.kind, s.at - T0, s.notify, s.reassign) for s in steps] == [
        (0, "first_touch.warning", timedelta(minutes=12), ("owner",), False),
        (1, "first_touch.breach", timedelta(minutes=15), ("owner", "manager"), False),
        (2, "first_touch.breach", timedelta(minutes=75), ("head",), True),
    ]


def test_nothing_is_due_before_its_time_and_nothing_twice(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead=HOT)], rules)
    clock = first_touch(state)
    steps = clock_steps(clock, rules.rule(state.rule_name), rules)
    just_before = T0 + timedelta(minutes=15) - timedelta(microseconds=1)
    assert [s.level for s in due_steps(clock, steps, set(), just_before)] == [0]
    assert [s.level for s in due_steps(clock, steps, {0}, T0 + timedelta(minutes=15))] == [1]
    assert due_steps(clock, steps, {0, 1}, T0 + timedelta(minutes=74)) == []
    assert next_fire_at(clock, steps, {0, 1}) == T0 + timedelta(minutes=75)
    assert next_fire_at(clock, steps, {0, 1, 2}) is None


def test_a_stopped_clock_owes_nothing(rules):
    state = replay("L1", [ev(1, "lead.created", 0, lead=HOT), ev(2, "lead.touched", 20)], rules)
    clock = first_touch(state)
    steps = clock_steps(clock, rules.rule(state.rule_name), rules)
    assert due_steps(clock, steps, set(), T0 + timedelta(hours=5)) == []
    assert next_fire_at(clock, steps, set()) is None


def test_roles_resolve_through_people_and_teams(rules):
    targets = resolve_targets(("owner", "manager", "head"), HOT, rules)
    assert [(t.channel, t.recipient, t.role) for t in targets] == [
        ("sink", "anna", "owner"),
        ("sink", "olga", "manager"),
        ("sink", "ivan", "head"),
    ]


def test_people_without_channels_go_to_the_log(rules):
    targets = resolve_targets(("owner", "manager"), {"owner": "stranger"}, rules)
    assert [(t.channel, t.recipient, t.role) for t in targets] == [
        ("log", "stranger", "owner"),
        ("log", None, "manager"),
    ]


def test_a_channel_named_directly_and_duplicates(rules):
    targets = resolve_targets(("sink", "owner", "owner"), HOT, rules)
    assert [(t.channel, t.recipient) for t in targets] == [("sink", None), ("sink", "anna")]


def test_reassign_rotates_through_the_team(rules):
    assert next_owner({"owner": "anna", "team": "inbound"}, rules) == "boris"
    assert next_owner({"owner": "boris", "team": "inbound"}, rules) == "anna"
    assert next_owner({"owner": "olga", "team": "inbound"}, rules) == "anna"
    assert next_owner({"owner": "ivan"}, rules) is None


def test_a_loss_reason_learnt_after_the_closure_is_kept(rules):
    closed = [ev(1, "lead.created", 0, lead=HOT), ev(2, "lead.closed", 30, outcome="lost")]
    later = ev(3, "lead.updated", 30, reason="price")
    assert replay("L1", closed + [later], rules).reason == "price"
    reopened = replay(
        "L1",
        closed + [ev(4, "lead.stage_changed", 40, lead={"stage": "new"}), ev(5, "lead.updated", 50, reason="price")],
        rules,
    )
    assert (reopened.status, reopened.reason) == ("open", None)
    won = replay(
        "L1",
        [
            ev(1, "lead.created", 0, lead=HOT),
            ev(2, "lead.closed", 30, outcome="won"),
            ev(3, "lead.updated", 31, reason="price"),
        ],
        rules,
    )
    assert (won.status, won.reason) == ("won", None)
