"""Warnings about rules that are valid but cannot do what ops meant. Pure."""

from __future__ import annotations

from typing import Any

from sla_guard.core.rules.schema import Rule, RuleSet


def _values(expected: Any) -> set[str] | None:
    if isinstance(expected, dict):
        return None
    items = expected if isinstance(expected, list) else [expected]
    return {str(item).strip().lower() for item in items}


def _range(expected: Any) -> tuple[float, float] | None:
    if isinstance(expected, dict):
        return (expected.get("min", float("-inf")), expected.get("max", float("inf")))
    return None


def _condition_implies(later: Any, earlier: Any) -> bool:
    """Every lead passing the later rule's condition also passes the earlier one's."""
    later_range, earlier_range = _range(later), _range(earlier)
    if later_range and earlier_range:
        return earlier_range[0] <= later_range[0] and later_range[1] <= earlier_range[1]
    later_values, earlier_values = _values(later), _values(earlier)
    if later_values is not None and earlier_values is not None:
        return later_values <= earlier_values
    return False


def shadows(earlier: Rule, later: Rule) -> bool:
    """``earlier`` matches every lead ``later`` matches, so ``later`` never applies."""
    return all(
        field in later.match and _condition_implies(later.match[field], expected)
        for field, expected in earlier.match.items()
    )


def never_matches(rule: Rule) -> str | None:
    for field, expected in rule.match.items():
        if isinstance(expected, list) and not expected:
            return f"match.{field} is an empty list"
        bounds = _range(expected)
        if bounds and bounds[0] > bounds[1]:
            return f"match.{field} has min greater than max"
        unknown = set(expected) - {"min", "max"} if isinstance(expected, dict) else set()
        if unknown:
            return f"match.{field} has keys {sorted(unknown)}; only min and max are read"
    return None


def lint(rules: RuleSet) -> list[tuple[str, str]]:
    """``(path, message)`` warnings: rules that can never match or are shadowed by an earlier rule."""
    warnings = []
    for index, rule in enumerate(rules.rules):
        problem = never_matches(rule)
        if problem:
            warnings.append((f"rules[{index}]", f'"{rule.name}" can never match: {problem}'))
            continue
        for earlier_index, earlier in enumerate(rules.rules[:index]):
            if never_matches(earlier) is None and shadows(earlier, rule):
                warnings.append(
                    (
                        f"rules[{index}]",
                        f'"{rule.name}" never applies: rules[{earlier_index}] '
                        f'"{earlier.name}" matches every lead it would match (first match wins)',
                    )
                )
                break
        if not rule.first_touch and not rule.stages and not rule.follow_ups:
            warnings.append((f"rules[{index}]", f'"{rule.name}" sets no clock (first_touch, stages or follow_ups)'))
    return warnings
