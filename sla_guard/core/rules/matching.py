"""Which rule applies to a lead: ordered rules, first match wins. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sla_guard.core.rules.schema import Rule, RuleSet


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def condition_holds(field: str, expected: Any, lead: Mapping[str, Any]) -> bool:
    """Whether one ``match`` condition holds for the lead's fields.

    A list means "any of"; ``amount`` takes ``{min: .., max: ..}`` (inclusive) or a number;
    ``tags`` holds when the lead carries any of the listed tags. Text compares case-insensitively.
    """
    actual = lead.get(field)
    if actual is None:
        return False
    if isinstance(expected, dict):
        try:
            number = float(actual)
        except (TypeError, ValueError):
            return False
        low, high = expected.get("min"), expected.get("max")
        return (low is None or number >= low) and (high is None or number <= high)
    wanted = {_as_text(item) for item in expected} if isinstance(expected, list) else {_as_text(expected)}
    if isinstance(actual, list | tuple):
        return any(_as_text(item) in wanted for item in actual)
    return _as_text(actual) in wanted


def rule_matches(rule: Rule, lead: Mapping[str, Any]) -> bool:
    """All conditions of the rule hold (a rule without ``match`` holds for every lead)."""
    return all(condition_holds(field, expected, lead) for field, expected in rule.match.items())


def explain_match(rule: Rule, lead: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """Each condition of ``rule`` with whether it held and why, for ``rules explain``."""
    out = []
    for field, expected in rule.match.items():
        held = condition_holds(field, expected, lead)
        out.append((field, held, f"lead {field}={lead.get(field)!r}, rule wants {expected!r}"))
    return out


def match_rule(rules: RuleSet, lead: Mapping[str, Any]) -> Rule | None:
    """The first rule whose ``match`` holds for the lead, or None."""
    for rule in rules.rules:
        if rule_matches(rule, lead):
            return rule
    return None
