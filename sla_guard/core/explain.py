"""``sla-guard rules explain``: which rule a lead gets, why, and every deadline. Pure."""

from __future__ import annotations

from sla_guard.core.engine import clock_steps, replay
from sla_guard.core.events import LeadEvent
from sla_guard.core.rules.matching import explain_match, rule_matches
from sla_guard.core.rules.schema import RuleSet


def _when(at, calendar) -> str:
    local = at.astimezone(calendar.timezone)
    return f"{local:%Y-%m-%d %H:%M:%S %Z} ({at:%Y-%m-%d %H:%M:%SZ})"


def explain(rules: RuleSet, events: list[LeadEvent]) -> str:
    """A report for ops: the matching rule with each condition, then each clock's deadlines."""
    events = sorted(events, key=lambda event: event.occurred_at)
    lead_id = events[0].lead.id
    state = replay(lead_id, [e for e in events if e.lead.id == lead_id], rules)
    lines = [f"lead {lead_id} (rules version {rules.version})"]
    for index, rule in enumerate(rules.rules):
        held = rule_matches(rule, state.fields)
        lines.append(f'  rules[{index}] "{rule.name}": {"MATCHES" if held else "no match"}')
        for _field, ok, why in explain_match(rule, state.fields):
            lines.append(f"      {'✓' if ok else '✗'} {why}")
        if not rule.match:
            lines.append("      (no conditions: matches every lead)")
        if held:
            break
    lines.extend(_pipeline_lines(rules, state.fields))
    if state.rule_name is None:
        lines.append("no rule matches: the lead gets no SLA clock")
        return "\n".join(lines)
    rule = rules.rule(state.rule_name)
    calendar = rules.calendar_for(rule)
    lines.append(f"calendar: {rule.calendar or '24/7'} ({calendar.timezone})")
    if not state.clocks:
        lines.append("no clock started (was the lead.created event given?)")
    for clock in state.clocks:
        lines.append(f"clock {clock.name}#{clock.cycle}: started {_when(clock.started_at, calendar)}")
        lines.append(f"    deadline {_when(clock.due_at, calendar)}")
        if clock.stopped_at:
            lines.append(
                f"    stopped {_when(clock.stopped_at, calendar)} ({clock.stop_reason}): "
                f"{'met' if clock.stopped_at <= clock.due_at else 'missed'}"
            )
        for step in clock_steps(clock, rule, rules):
            what = "warning" if step.level == 0 else f"escalation level {step.level}"
            extra = ", reassign" if step.reassign else ""
            lines.append(f"    {what}: {_when(step.at, calendar)} → {', '.join(step.notify)}{extra}")
    return "\n".join(lines)


def _pipeline_lines(rules: RuleSet, fields: dict) -> list[str]:
    """Where the lead stands in its pipeline's stage order (the rules file's ``pipelines:``)."""
    pipeline, stage = fields.get("pipeline"), fields.get("stage")
    stages = rules.spec.pipelines.get(pipeline) if pipeline else None
    if not stages:
        listed = ", ".join(rules.spec.pipelines) or "none"
        return [
            f"pipeline {pipeline or '(none)'}: not in pipelines: (listed: {listed}); funnel stages in first-seen order"
        ]
    line = f"pipeline {pipeline}: {' → '.join(stages)}"
    if stage in stages:
        line += f" (lead is in {stage}, stage {stages.index(stage) + 1} of {len(stages)})"
    elif stage:
        line += f" (lead is in {stage}, which the pipeline does not list)"
    return [line]
