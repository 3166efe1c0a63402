"""Checks of a rules file that span its parts: environment references, names that must exist,
notify targets, channel settings. Each problem is a ``(path, message)`` pair. Pure."""

from __future__ import annotations

import re
from typing import Any

from sla_guard.core.rules.notify_spec import channel_problems, needs_address, typed_channel
from sla_guard.core.rules.schema import LOG_CHANNEL, MATCH_FIELDS, ROLES, RulesFile

_ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, path: str, env: dict, errors: list) -> Any:
    """Replace ``${NAME}`` (or ``${NAME:-default}``) with environment values: secrets stay out of the file."""
    if isinstance(value, dict):
        return {
            key: expand_env(item, f"{path}.{key}" if path else str(key), env, errors) for key, item in value.items()
        }
    if isinstance(value, list):
        return [expand_env(item, f"{path}[{index}]", env, errors) for index, item in enumerate(value)]
    if isinstance(value, str):

        def repl(match):
            name, default = match.group(1), match.group(2)
            if name not in env and default is not None:
                return default
            if name not in env:
                errors.append((path, f"environment variable {name} is not set"))
                return match.group(0)
            return env[name]

        return _ENV_REF.sub(repl, value)
    return value


def cross_check(spec: RulesFile, calendars: dict, errors: list, positions: list[int]) -> None:
    if not spec.rules and not positions and not any(path.startswith("rules[") for path, _ in errors):
        errors.append(("rules", "needs at least one rule"))
    channel_names = set(spec.channels) | {LOG_CHANNEL}
    reported = {path for path, _ in errors}
    for name, channel in spec.channels.items():
        errors.extend(problem for problem in channel_problems(name, channel) if problem[0] not in reported)
    _check_notify_parts(spec, channel_names, errors)
    for name, person in spec.people.items():
        if person.manager and person.manager not in spec.people:
            errors.append((f"people.{name}.manager", f'"{person.manager}" is not in people'))
        if person.team and person.team not in spec.teams:
            errors.append((f"people.{name}.team", f'"{person.team}" is not in teams'))
        for index, channel in enumerate(person.channels):
            if channel not in channel_names:
                errors.append((f"people.{name}.channels[{index}]", f'"{channel}" is not a channel'))
    for name, team in spec.teams.items():
        if team.head and team.head not in spec.people:
            errors.append((f"teams.{name}.head", f'"{team.head}" is not in people'))
    seen = set()
    for index, rule in zip(positions, spec.rules, strict=True):
        where = f"rules[{index}]"
        if rule.name in seen:
            errors.append((f"{where}.name", f'"{rule.name}" is used by an earlier rule'))
        seen.add(rule.name)
        for key in rule.match:
            if key not in MATCH_FIELDS:
                errors.append(
                    (f"{where}.match.{key}", f"cannot match on {key!r}; use one of {', '.join(MATCH_FIELDS)}")
                )
        if rule.calendar and rule.calendar not in calendars:
            errors.append((f"{where}.calendar", f'"{rule.calendar}" is not in calendars'))
        ladders = []
        cadence_names = set()
        for position, cadence in enumerate(rule.follow_ups):
            cadence_name = cadence.name or f"follow_up_{position}"
            if cadence_name in cadence_names:
                errors.append(
                    (f"{where}.follow_ups[{position}].name", f'"{cadence_name}" is used by an earlier follow-up')
                )
            cadence_names.add(cadence_name)
            ladders.append((f"{where}.follow_ups[{position}].escalate", cadence.escalate))
        if rule.first_touch:
            ladders.append((f"{where}.first_touch.escalate", rule.first_touch.escalate))
        for stage, stage_rule in rule.stages.items():
            ladders.append((f"{where}.stages.{stage}.escalate", stage_rule.as_clock().escalate))
        for ladder_path, ladder in ladders:
            for level_index, level in enumerate(ladder):
                for target_index, target in enumerate(level.notify):
                    if target not in ROLES and target not in channel_names:
                        errors.append(
                            (
                                f"{ladder_path}[{level_index}].notify[{target_index}]",
                                f'"{target}" is neither a role ({", ".join(ROLES)}) nor a channel',
                            )
                        )


def _check_notify_parts(spec: RulesFile, channel_names: set[str], errors: list) -> None:
    """People's addresses for the channels they list, ``on_duty``, ``ops`` and ``digests`` targets."""
    for name, person in spec.people.items():
        for index, channel_name in enumerate(person.channels):
            channel = spec.channels.get(channel_name)
            if channel is None or channel_problems(channel_name, channel):
                continue
            key = needs_address(typed_channel(channel))
            if key and getattr(person, key) is None:
                errors.append(
                    (
                        f"people.{name}.channels[{index}]",
                        f'channel "{channel_name}" names no destination: give {name} a `{key}` address',
                    )
                )
    if spec.on_duty and spec.on_duty not in spec.people:
        errors.append(("on_duty", f'"{spec.on_duty}" is not in people'))
    for index, target in enumerate(spec.ops.notify):
        if target not in channel_names:
            errors.append((f"ops.notify[{index}]", f'"{target}" is not a channel'))
    for index, target in enumerate(spec.digests.weekly_notify if spec.digests else ()):
        if target not in channel_names:
            errors.append((f"digests.weekly_notify[{index}]", f'"{target}" is not a channel'))
